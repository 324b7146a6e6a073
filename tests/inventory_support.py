"""Helpers for the ec2_fleet inventory tests: run the plugin in-process or through the real CLI,
count AWS calls, and a labelled test double for what moto cannot do (deny access)."""

from __future__ import annotations

import contextlib
import http.server
import json
import os
import subprocess
import sys
import threading
import urllib.request
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent


def write_config(tmp_path, config, name="fleet", suffix="ec2_fleet.yml"):
    path = Path(tmp_path) / f"{name}.{suffix}"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path




def parse_inventory(path, cache=True):
    """Run the plugin in-process, as InventoryManager does; returns (inventory data, plugin)."""
    from ansible.inventory.data import InventoryData
    from ansible.parsing.dataloader import DataLoader
    from ansible.plugins.loader import inventory_loader

    # The collection loader is installed once per test session (tests/conftest.py), as every
    # ansible CLI installs it; the plugin is found in the collection by its FQCN.
    plugin = inventory_loader.get("ec2fleet.fleet.ec2_fleet")
    assert plugin is not None, "ec2_fleet plugin not found"
    inventory = InventoryData()
    plugin.parse(inventory, DataLoader(), str(path), cache=cache)
    inventory.reconcile_inventory()  # as InventoryManager does after every source
    with contextlib.suppress(AttributeError):  # no cache configured: InventoryManager ignores it the same way
        plugin.update_cache_if_changed()
    return inventory, plugin


def hostvars(inventory, name):
    return inventory.get_host(name).vars


def group_hosts(inventory, group):
    return sorted(h.name for h in inventory.groups[group].get_hosts())


class CallCounter:
    """Counts every AWS API call made through fleet_aws clients (botocore before-call event)."""

    def __init__(self, monkeypatch):
        self.calls = []
        self.factories = 0
        from ansible_collections.ec2fleet.fleet.plugins.module_utils import aws as fleet_aws

        original_call = fleet_aws.ClientFactory.__call__
        original_init = fleet_aws.ClientFactory.__init__
        counter = self

        def counting_init(factory, *args, **kwargs):
            counter.factories += 1
            original_init(factory, *args, **kwargs)

        def counting_call(factory, service, region=None):
            client = original_call(factory, service, region)
            if not getattr(client, "_ec2fleet_counted", False):
                client.meta.events.register(
                    "before-call", lambda model, **_: counter.calls.append(model.name)
                )
                client._ec2fleet_counted = True
            return client

        monkeypatch.setattr(fleet_aws.ClientFactory, "__init__", counting_init)
        monkeypatch.setattr(fleet_aws.ClientFactory, "__call__", counting_call)


def cli_env(extra=None):
    env = dict(os.environ)
    env["ANSIBLE_CONFIG"] = str(REPO / "ansible.cfg")
    env["ANSIBLE_NOCOLOR"] = "1"
    env["ANSIBLE_LOCAL_TEMP"] = env.get("ANSIBLE_LOCAL_TEMP", "/tmp/ansible-local-tests")
    env.update(extra or {})
    return env


def run_cli(*args, env=None, timeout=300):
    """The real ansible / ansible-inventory command, run from the repo (its ansible.cfg)."""
    cmd = [str(VENV_BIN / args[0]), *args[1:]]
    return subprocess.run(cmd, cwd=REPO, env=cli_env(env), capture_output=True, text=True, timeout=timeout)


def inventory_list(path, env=None, args=()):
    proc = run_cli("ansible-inventory", "-i", str(path), "--list", *args, env=env)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def all_hosts(listing):
    return set(listing.get("_meta", {}).get("hostvars", {}))


class DenyingEndpoint:
    """TEST DOUBLE for IAM, which the shared moto server does not enforce: an HTTP endpoint on
    127.0.0.1 that answers the denied services with AWS's AccessDenied error and forwards every
    other request unchanged to the real emulator."""

    def __init__(self, upstream, denied_services=("*",)):
        self.upstream = upstream.rstrip("/")
        self.denied = set(denied_services)
        handler = self._handler()
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def _handler(self):
        endpoint = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _service(self):
                auth = self.headers.get("Authorization", "")
                # Credential=AKID/date/region/service/aws4_request
                try:
                    return auth.split("Credential=", 1)[1].split(",", 1)[0].split("/")[3]
                except IndexError:
                    return ""

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                service = self._service()
                if "*" in endpoint.denied or service in endpoint.denied:
                    payload = (
                        "<ErrorResponse><Error><Type>Sender</Type><Code>AccessDenied</Code>"
                        f"<Message>User is not authorized to perform {service} calls</Message></Error>"
                        "<RequestId>test-double</RequestId></ErrorResponse>"
                    ).encode()
                    if service == "ec2":
                        payload = (
                            b"<Response><Errors><Error><Code>UnauthorizedOperation</Code>"
                            b"<Message>You are not authorized to perform this operation.</Message></Error></Errors>"
                            b"<RequestID>test-double</RequestID></Response>"
                        )
                    self.send_response(403)
                    self.send_header("Content-Type", "text/xml")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                    return
                request = urllib.request.Request(endpoint.upstream + self.path, data=body, method="POST")
                for key, value in self.headers.items():
                    if key.lower() not in ("host", "content-length"):
                        request.add_header(key, value)
                try:
                    with urllib.request.urlopen(request, timeout=60) as resp:
                        status, headers, data = resp.status, resp.headers, resp.read()
                except urllib.error.HTTPError as err:
                    status, headers, data = err.code, err.headers, err.read()
                self.send_response(status)
                for key, value in headers.items():
                    if key.lower() not in ("content-length", "transfer-encoding", "connection", "server", "date"):
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        return Handler

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()

"""Helpers for the ec2_fleet inventory tests: run the plugin in-process or through the real CLI,
count AWS calls, and labelled test doubles for what moto cannot do (deny access, answer SSM's
DescribeInstanceInformation)."""

from __future__ import annotations

import contextlib
import http.server
import json
import os
import shlex
import stat
import subprocess
import sys
import textwrap
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent


# What a recording program keeps of its environment: the AWS credentials a ProxyCommand hands on.
RECORDED_ENV = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_REGION")


def recording_program(path: Path) -> Path:
    """A stand-in program at `path` (the AWS CLI, or ssh for a bastion hop): it writes the
    arguments it was started with, and the AWS credentials in its environment, to $RECORD as JSON
    ({"argv": [...], "env": {...}}), and exits."""
    path.write_text(textwrap.dedent(f"""\
        #!{sys.executable}
        import json, os, sys
        with open(os.environ["RECORD"], "w") as out:
            json.dump({{"argv": sys.argv[1:], "env": {{k: os.environ.get(k) for k in {RECORDED_ENV!r}}}}}, out)
        """))
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def ssh_through(hv, record, env=None, ssh="ssh"):
    """Connect with a real ssh (`ssh`) as Ansible would (its args split as Ansible splits them);
    the ProxyCommand runs and its recording stand-in writes `record`, then the connection ends."""
    args = shlex.split(hv["ansible_ssh_common_args"])
    cmd = [ssh, "-F", "/dev/null", "-o", "BatchMode=yes", "-o", "ConnectTimeout=10", "-o", "StrictHostKeyChecking=no",
           "-o", "UserKnownHostsFile=/dev/null", *args, "-p", "22", hv["ansible_host"], "true"]
    record.unlink(missing_ok=True)
    proc = subprocess.run(cmd, env={**os.environ, **(env or {}), "RECORD": str(record)}, capture_output=True,
                          text=True, timeout=60)
    assert record.exists(), proc.stderr
    return json.loads(record.read_text())


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


class PoolTracker:
    """Holds each (account, region) query of the plugin ``hold`` seconds and records how many ran
    at once (``peak``) and which pairs ran (``pairs``: (account alias, region))."""

    def __init__(self, monkeypatch, hold=0.3):
        from ansible.plugins.loader import inventory_loader

        cls = type(inventory_loader.get("ec2fleet.fleet.ec2_fleet"))
        original = cls._query_region
        self.peak, self.pairs, self._active, self._lock = 0, [], 0, threading.Lock()
        tracker = self

        def tracking(plugin, account, region):
            with tracker._lock:
                tracker._active += 1
                tracker.peak = max(tracker.peak, tracker._active)
                tracker.pairs.append((account.alias, region))
            try:
                time.sleep(hold)
                return original(plugin, account, region)
            finally:
                with tracker._lock:
                    tracker._active -= 1

        monkeypatch.setattr(cls, "_query_region", tracking)

    def reset(self):
        self.peak, self.pairs = 0, []


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


class ForwardingEndpoint:
    """TEST DOUBLE base: an HTTP endpoint on 127.0.0.1 that forwards every request unchanged to the
    real emulator, except those its ``answer`` hook answers itself (what moto cannot do)."""

    def __init__(self, upstream):
        self.upstream = upstream.rstrip("/")
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def answer(self, request):
        """(status, content type, payload) to answer ``request`` here, or None to forward it."""
        return None

    def _handler(self):
        endpoint = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                request = SignedRequest(self.headers, body)
                answered = endpoint.answer(request)
                if answered is not None:
                    status, content_type, payload = answered
                    self.send_response(status)
                    self.send_header("Content-Type", content_type)
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                    return
                forward = urllib.request.Request(endpoint.upstream + self.path, data=body, method="POST")
                for key, value in self.headers.items():
                    if key.lower() not in ("host", "content-length"):
                        forward.add_header(key, value)
                try:
                    with urllib.request.urlopen(forward, timeout=60) as resp:
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


class SignedRequest:
    """What a test double needs of a SigV4-signed request: service, region, key, target, body."""

    def __init__(self, headers, body):
        self.body = body
        self.target = headers.get("X-Amz-Target", "")
        # Authorization: AWS4-HMAC-SHA256 Credential=AKID/date/region/service/aws4_request, ...
        auth = headers.get("Authorization", "")
        try:
            scope = auth.split("Credential=", 1)[1].split(",", 1)[0].split("/")
        except IndexError:
            scope = ["", "", "", ""]
        self.access_key, self.region, self.service = scope[0], scope[2], scope[3]


class DenyingEndpoint(ForwardingEndpoint):
    """TEST DOUBLE for IAM, which the shared moto server does not enforce: answers the denied
    services, and AssumeRole of the denied roles, with AWS's access denied error."""

    def __init__(self, upstream, denied_services=("*",), denied_roles=()):
        super().__init__(upstream)
        self.denied = set(denied_services)
        self.denied_roles = [urllib.parse.quote(arn, safe="").encode() for arn in denied_roles]

    def answer(self, request):
        service = request.service
        if service == "sts" and any(b"RoleArn=" + arn in request.body for arn in self.denied_roles):
            return 403, "text/xml", (
                b"<ErrorResponse><Error><Type>Sender</Type><Code>AccessDenied</Code>"
                b"<Message>User is not authorized to perform: sts:AssumeRole</Message></Error>"
                b"<RequestId>test-double</RequestId></ErrorResponse>"
            )
        if "*" not in self.denied and service not in self.denied:
            return None
        if service == "ec2":
            return 403, "text/xml", (
                b"<Response><Errors><Error><Code>UnauthorizedOperation</Code>"
                b"<Message>You are not authorized to perform this operation.</Message></Error></Errors>"
                b"<RequestID>test-double</RequestID></Response>"
            )
        if service == "ssm":
            return 400, "application/x-amz-json-1.1", json.dumps(
                {"__type": "AccessDeniedException", "message": "User is not authorized to perform ssm calls"}).encode()
        return 403, "text/xml", (
            "<ErrorResponse><Error><Type>Sender</Type><Code>AccessDenied</Code>"
            f"<Message>User is not authorized to perform {service} calls</Message></Error>"
            "<RequestId>test-double</RequestId></ErrorResponse>"
        ).encode()


class SsmInstanceInformation(ForwardingEndpoint):
    """TEST DOUBLE for SSM's DescribeInstanceInformation, which moto (5.2.5) does not implement (its
    server answers HTTP 500): managed instances registered here per region are answered in pages of
    at most ``page_size`` (fewer than asked, as AWS may), with NextToken; every other request goes
    to the emulator. ``requests`` records (access key, region) of each call it answered."""

    def __init__(self, upstream, page_size=2):
        super().__init__(upstream)
        self.page_size = page_size
        self.managed = {}  # region -> [InstanceInformation]
        self.requests = []

    def register(self, region, instance_id, ping="Online", agent="3.3.40.0", platform=("Linux", "Debian GNU/Linux", "12")):
        self.managed.setdefault(region, []).append({
            "InstanceId": instance_id, "PingStatus": ping, "AgentVersion": agent, "ResourceType": "EC2Instance",
            "PlatformType": platform[0], "PlatformName": platform[1], "PlatformVersion": platform[2]})

    def answer(self, request):
        if request.target != "AmazonSSM.DescribeInstanceInformation":
            return None
        self.requests.append((request.access_key, request.region))
        query = json.loads(request.body or b"{}")
        kinds = [v for f in query.get("Filters", []) if f["Key"] == "ResourceType" for v in f["Values"]]
        items = [i for i in self.managed.get(request.region, []) if not kinds or i["ResourceType"] in kinds]
        start = int(query.get("NextToken") or 0)
        size = min(self.page_size, query.get("MaxResults", 50))
        page = {"InstanceInformationList": items[start:start + size]}
        if start + size < len(items):
            page["NextToken"] = str(start + size)
        return 200, "application/x-amz-json-1.1", json.dumps(page).encode()

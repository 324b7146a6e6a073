"""Helpers for the nginx scenario's tests: HTTP(S) to the published ports, playbook runs."""

from __future__ import annotations

import http.client
import os
import ssl
import subprocess
from dataclasses import dataclass
from pathlib import Path

SCENARIO = Path(__file__).resolve().parent.parent
REPO = SCENARIO.parent.parent
HTTP_PORT, HTTPS_PORT = 18480, 18443  # published on 127.0.0.1 (molecule.yml)


@dataclass
class Response:
    status: int
    body: bytes
    headers: http.client.HTTPMessage


def tls_context(minimum=None, maximum=None) -> ssl.SSLContext:
    # Self-signed test certificate: no verification, only the protocol matters here.
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    if minimum:
        context.minimum_version = minimum
    if maximum:
        context.maximum_version = maximum
    return context


def request(method: str, path: str, tls: bool = False, body: bytes | None = None, headers=None) -> Response:
    if tls:
        conn = http.client.HTTPSConnection("127.0.0.1", HTTPS_PORT, timeout=10, context=tls_context())
    else:
        conn = http.client.HTTPConnection("127.0.0.1", HTTP_PORT, timeout=10)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return Response(response.status, response.read(), response.headers)
    finally:
        conn.close()


def run_playbook(name: str, *args: str) -> subprocess.CompletedProcess:
    """ansible-playbook against the Molecule instance, with Molecule's inventory and config."""
    ephemeral = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"])
    env = dict(os.environ, ANSIBLE_CONFIG=str(ephemeral / "ansible.cfg"), ANSIBLE_COLLECTIONS_PATH=str(REPO / ".ansible" / "collections"),
               ANSIBLE_FORCE_COLOR="0", ANSIBLE_NOCOLOR="1")
    cmd = ["ansible-playbook", "-i", str(ephemeral / "inventory"), str(SCENARIO / name), *args]
    return subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

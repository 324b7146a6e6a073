"""Helpers for the app scenario's tests: HTTP through nginx and playbook runs against the instance."""

from __future__ import annotations

import json
import os
import re
import subprocess
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

SCENARIO = Path(__file__).resolve().parent.parent
REPO = SCENARIO.parent.parent
# nginx on the instance, published on the controller's loopback (molecule.yml).
BASE_URL = "http://127.0.0.1:18580"


@dataclass
class Response:
    status: int
    body: bytes
    headers: dict

    def json(self):
        return json.loads(self.body)


def http_get(path: str) -> Response:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(BASE_URL + path, timeout=10) as response:
            return Response(response.status, response.read(), dict(response.headers))
    except urllib.error.HTTPError as exc:
        return Response(exc.code, exc.read(), dict(exc.headers))


@dataclass
class PlaybookRun:
    rc: int
    output: str

    @property
    def changed(self) -> int:
        counts = re.findall(r"changed=(\d+)", self.output)
        assert counts, f"no play recap in output:\n{self.output[-3000:]}"
        return sum(int(count) for count in counts)


def run_playbook(name: str, *args: str) -> PlaybookRun:
    """ansible-playbook against the Molecule instance, with Molecule's inventory and config."""
    ephemeral = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"])
    env = dict(os.environ)
    env.update(
        ANSIBLE_CONFIG=str(ephemeral / "ansible.cfg"),
        ANSIBLE_COLLECTIONS_PATH=str(REPO / ".ansible" / "collections"),
        ANSIBLE_FORCE_COLOR="0",
        ANSIBLE_NOCOLOR="1",
    )
    cmd = ["ansible-playbook", "-i", str(ephemeral / "inventory"), str(SCENARIO / name), *args]
    result = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    return PlaybookRun(result.returncode, result.stdout)


@pytest.fixture
def dist() -> Path:
    return Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"]) / "dist"

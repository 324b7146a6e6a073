"""Shared fixtures: the AWS emulator and the container platform, one definition each."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from ec2fleet import emulator

REPO = Path(__file__).resolve().parent.parent


def pytest_configure(config):
    # Ansible's collection loader, installed before any test imports ansible_collections.*: the
    # tests then import ec2fleet.fleet's Python the way Ansible does (one module object each, with
    # the collection's metadata), whether they call Ansible in-process or not.
    from ansible.plugins.loader import init_plugin_loader

    init_plugin_loader([str(REPO / ".ansible" / "collections")])


def pytest_ignore_collect(collection_path, config):
    # tests/fleet needs a live fleet: it runs through `tools/fleet smoke` (which passes --hosts).
    if collection_path.name == "fleet" and collection_path.parent == REPO / "tests":
        return not config.getoption("hosts", None)
    # tests/e2e brings a whole local fleet up: only `tools/test e2e` runs it.
    if collection_path.name == "e2e" and collection_path.parent == REPO / "tests":
        return os.environ.get("EC2FLEET_E2E") != "1"
    return None


def pytest_sessionstart(session):
    # A run that was killed midway may have left a moto server behind: stop it first.
    emulator.clean_stale()


@pytest.fixture(scope="session")
def moto_server():
    """One moto server for the session, stopped by PID however the session ends."""
    server = emulator.MotoServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def aws(moto_server, monkeypatch):
    """A clean emulator for one test, with the environment boto3 and Ansible read."""
    moto_server.reset()
    for key in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE"):
        monkeypatch.delenv(key, raising=False)
    for key, value in moto_server.env().items():
        monkeypatch.setenv(key, value)
    # No real credential file can leak into a test.
    monkeypatch.setenv("AWS_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)
    return moto_server


@pytest.fixture(scope="session")
def base_image() -> str:
    """The project's systemd base image, built (or reused) by tools/platform."""
    out = subprocess.run(
        [str(REPO / "tools" / "platform"), "image"], check=True, capture_output=True, text=True
    )
    return out.stdout.strip().splitlines()[-1]

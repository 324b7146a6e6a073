"""ansible.cfg as Ansible itself reads it (ansible-config dump), not as text: the operator settings
the foundation promises are in effect."""

from __future__ import annotations

import configparser
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
ANSIBLE_CONFIG_BIN = Path(sys.executable).parent / "ansible-config"


def dump(*args: str):
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    env["ANSIBLE_CONFIG"] = str(REPO / "ansible.cfg")
    out = subprocess.run([str(ANSIBLE_CONFIG_BIN), "dump", "--format", "json", *args], cwd=REPO, env=env,
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out)


@pytest.fixture(scope="module")
def general() -> dict:
    return {item["name"]: item["value"] for item in dump() if "name" in item}


@pytest.fixture(scope="module")
def ssh() -> dict:
    plugins = dump("-t", "connection")
    settings = next(entry["ssh"] for entry in plugins if "ssh" in entry)
    return {item["name"]: item["value"] for item in settings}


def test_inventory_parse_failures_are_fatal_and_ec2_fleet_is_enabled(general):
    assert general["INVENTORY_ANY_UNPARSED_IS_FAILED"] is True
    assert general["INVENTORY_UNPARSED_IS_FAILED"] is True
    assert "ec2fleet.fleet.ec2_fleet" in general["INVENTORY_ENABLED"]


def test_operator_defaults(general):
    assert general["RETRY_FILES_ENABLED"] is False
    assert general["DEFAULT_FORKS"] >= 20
    assert general["DEFAULT_GATHERING"] == "smart"
    assert general["CACHE_PLUGIN"] == "jsonfile" and general["CACHE_PLUGIN_TIMEOUT"] > 0
    assert general["HOST_KEY_CHECKING"] is True
    assert {"ansible.posix.profile_tasks", "ansible.posix.timer"} <= set(general["CALLBACKS_ENABLED"])


def test_ssh_reuses_connections_and_rides_out_a_bastion_burst(ssh):
    assert ssh["pipelining"] is True
    args = ssh["ssh_args"]
    assert "ControlMaster=auto" in args and "ControlPersist=" in args
    # Strict: hosts are trusted through the host CA, never on first use (issue 19).
    assert "StrictHostKeyChecking=yes" in args and "accept-new" not in args
    # Ansible pauses 2**attempt - 1 seconds between tries; the bastion drops part of a burst
    # beyond MaxStartups' start (10) until earlier handshakes finish: the retries must span
    # more than a few seconds, not retry into the same burst.
    pauses = [min(2 ** attempt - 1, 30) for attempt in range(ssh["reconnection_retries"])]
    assert sum(pauses) >= 20, pauses


def test_default_strategy_is_mitogen_from_the_collection(general):
    assert general["DEFAULT_STRATEGY"] == "ec2fleet.fleet.mitogen_linear"
    assert str(REPO / ".ansible" / "collections") in [str(Path(p)) for p in general["COLLECTIONS_PATHS"]]


def test_no_plugin_path_settings_the_collection_replaces(general):
    """The checkout is the collection: nothing is found through per-type plugin paths."""
    text = (REPO / "ansible.cfg").read_text()
    for setting in ("library", "module_utils", "filter_plugins", "inventory_plugins", "callback_plugins",
                    "strategy_plugins", "doc_fragment_plugins", "roles_path"):
        assert not re.search(rf"^\s*{setting}\s*=", text, re.M), setting


def test_ansible_cfg_reads_with_configparser_interpolation():
    # testinfra's ansible backend (tools/fleet smoke) reads ansible.cfg with configparser's
    # interpolation: a bare '%' (such as ssh's %C) anywhere in it breaks every smoke test.
    config = configparser.ConfigParser()
    config.read(REPO / "ansible.cfg")
    for section in config.sections():
        for key in config[section]:
            config.get(section, key)

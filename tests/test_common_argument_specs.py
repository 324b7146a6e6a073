"""The common role rejects bad variables before it changes anything.

Each case runs `ansible-playbook --check` on the controller (localhost, connection local) with a
play that includes the role and one bad variable. Role argument validation (meta/argument_specs.yml)
is the role's first task, and tasks/validate.yml (format checks a type cannot express) runs right
after it, before any task that could change the host. --check is only a safety net should a case
ever get past validation.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
ROLE = REPO / "roles" / "common"
ANSIBLE_PLAYBOOK = Path(sys.executable).with_name("ansible-playbook")

GOOD_USER = {"name": "alice", "ssh_keys": ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBfa alice@test"]}

# (id, variables, the task that must fail, text the failure must contain)
SPEC = "Validating arguments against arg spec 'main'"
BAD_VALUES = [
    ("bool", {"common_timesync_enabled": "maybe"}, SPEC,
     "argument 'common_timesync_enabled' is of type str and we were unable to convert to bool"),
    ("choices", {"common_sudo_policy": "sometimes"}, SPEC,
     "value of common_sudo_policy must be one of: nopasswd, password, none, got: sometimes"),
    ("int", {"common_apt_cache_valid_time": "an hour"}, SPEC,
     "argument 'common_apt_cache_valid_time' is of type str and we were unable to convert to int"),
    ("list", {"common_admin_users": {"name": "alice"}}, SPEC,
     "argument 'common_admin_users' is of type dict and we were unable to convert to list"),
    ("user-without-name", {"common_admin_users": [{"ssh_keys": []}]}, SPEC,
     "missing required arguments: name found in common_admin_users"),
    ("user-state", {"common_admin_users": [dict(GOOD_USER, state="gone")]}, SPEC,
     "value of state must be one of: present, absent, got: gone found in common_admin_users"),
    ("user-sudo", {"common_admin_users": [dict(GOOD_USER, sudo="perhaps")]}, SPEC,
     "argument 'sudo' is of type str found in 'common_admin_users'. and we were unable to convert to bool"),
    ("user-unknown-option", {"common_admin_users": [dict(GOOD_USER, groups=["wheel"])]}, SPEC,
     "common_admin_users.groups. Supported parameters include: comment, name, principals, shell, ssh_keys, state, sudo."),
    # A list passes a `str` type check (Ansible converts it to text), so the role's own
    # format check catches it, still before any change.
    ("journald-list", {"common_journald_max_use": [1, 2]},
     "Check common_journald_max_use is a size journald understands",
     "common_journald_max_use must be a size like 512M or 2G"),
    ("journald-unit", {"common_journald_max_use": "512MB"},
     "Check common_journald_max_use is a size journald understands",
     'got "512MB"'),
    ("root-admin", {"common_admin_users": [dict(GOOD_USER, name="root")]},
     "Check the admin user names are valid, unique and not protected accounts",
     "never root"),
    ("shared-group", {"common_admin_group": "sudo"},
     "Check the admin group name is a valid group name",
     "common_admin_group must be a dedicated POSIX group name"),
    ("sudoers-dot", {"common_sudoers_file": "/etc/sudoers.d/admins.conf"},
     "Check common_sudoers_file is a drop-in sudo reads",
     "whose name has no '.' or '~'"),
    ("host-cert-without-ca", {"common_ssh_host_certificate": True},
     "Check the host certificate settings", "needs exactly one of common_ssh_host_ca_private_key"),
    ("host-cert-two-cas", {"common_ssh_host_certificate": True, "common_ssh_host_ca_private_key": "/ca",
                           "common_ssh_host_ca_ssm_parameter": "/fleet/ca"},
     "Check the host certificate settings", 'parameter "/fleet/ca"'),
    ("host-cert-validity", {"common_ssh_host_certificate_valid_for": "a month"},
     "Check the host certificate settings", 'valid_for "a month"'),
    ("certificates-only-without-ca", {"common_ssh_static_keys": False},
     "Check the user CAs, principals and revocations", "not empty when common_ssh_static_keys is false"),
    ("user-ca-not-a-key", {"common_ssh_user_ca_public_keys": ["AAAAC3NzaC1lZDI1NTE5"]},
     "Check the user CAs, principals and revocations", "must be public key lines"),
    ("revoked-two-keys", {"common_ssh_revoked_keys": [{"key_id": "a", "serial": 1}]},
     "Check the user CAs, principals and revocations", "is one of {key: <public key line>}"),
    ("revoked-by-id-without-ca", {"common_ssh_revoked_keys": [{"key_id": "alice-1"}]},
     "Check the user CAs, principals and revocations", "key_id and serial need a user CA"),
    ("principal-with-comma", {"common_admin_users": [dict(GOOD_USER, principals=["a,b"])]},
     "Check the user CAs, principals and revocations", "admin principals have no spaces or commas"),
]


def run_role(tmp_path: Path, variables: dict) -> tuple[subprocess.CompletedProcess, list[dict]]:
    """Include the role on localhost in --check with `variables`; return the run and its failures."""
    playbook = tmp_path / "play.yml"
    playbook.write_text(yaml.safe_dump([{
        "name": "Include the common role with the variables under test",
        "hosts": "localhost",
        "gather_facts": False,
        "tasks": [{
            "name": "Include the role",
            "ansible.builtin.include_role": {"name": "ec2fleet.fleet.common"},
            "vars": variables,
        }],
    }]))
    env = dict(
        os.environ,
        ANSIBLE_CONFIG=str(REPO / "ansible.cfg"),
        ANSIBLE_STDOUT_CALLBACK="ansible.builtin.json",
        # Only the JSON report on stdout (ansible.cfg adds timing callbacks that print there too).
        ANSIBLE_CALLBACKS_ENABLED="ansible.builtin.json",
        ANSIBLE_FACT_CACHING="memory",
        ANSIBLE_NOCOLOR="1",
    )
    result = subprocess.run(
        # The default inventory (inventory/controller.yml) is the controller alone.
        [str(ANSIBLE_PLAYBOOK), "--check", str(playbook)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
    )
    report = json.loads(result.stdout)
    failures = [
        {"task": task["task"]["name"], "msg": str(host_result.get("msg", ""))}
        for play in report["plays"]
        for task in play["tasks"]
        for host_result in task["hosts"].values()
        if host_result.get("failed")
    ]
    return result, failures


@pytest.mark.parametrize(
    "variables,task,message", [case[1:] for case in BAD_VALUES], ids=[case[0] for case in BAD_VALUES]
)
def test_bad_value_rejected_before_any_change(tmp_path, variables, task, message):
    result, failures = run_role(tmp_path, variables)
    assert result.returncode != 0
    assert len(failures) == 1, failures
    assert task in failures[0]["task"], failures
    assert message in failures[0]["msg"], failures[0]["msg"]
    report = json.loads(result.stdout)
    assert report["stats"]["localhost"]["changed"] == 0


def test_role_defaults_satisfy_the_spec(tmp_path):
    """The documented defaults and a full admin entry pass the spec (validation only, no role run)."""
    spec = yaml.safe_load((ROLE / "meta" / "argument_specs.yml").read_text())["argument_specs"]["main"]
    defaults = yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())
    defaults["common_admin_users"] = [
        dict(GOOD_USER, comment="Alice", shell="/bin/sh", state="present", sudo=False, principals=["alice"]),
        {"name": "bob", "state": "absent"},
    ]
    playbook = tmp_path / "validate.yml"
    playbook.write_text(yaml.safe_dump([{
        "name": "Validate the role defaults against its argument spec",
        "hosts": "localhost",
        "connection": "local",
        "gather_facts": False,
        "tasks": [{
            "name": "Validate",
            "ansible.builtin.validate_argument_spec": {"argument_spec": spec["options"], "provided_arguments": defaults},
        }],
    }]))
    result = subprocess.run(
        [str(ANSIBLE_PLAYBOOK), str(playbook)],
        cwd=REPO, env=dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg")),
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_spec_documents_every_default():
    """Every variable in defaults/main.yml is typed and described in the spec, and vice versa."""
    spec = yaml.safe_load((ROLE / "meta" / "argument_specs.yml").read_text())["argument_specs"]["main"]["options"]
    defaults = yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())
    assert sorted(spec) == sorted(defaults)
    for name, option in spec.items():
        assert option.get("type") and option.get("description"), name
        assert option.get("default") == defaults[name], name
    readme = (ROLE / "README.md").read_text()
    missing = [name for name in defaults if f"`{name}`" not in readme]
    assert not missing, f"README.md does not list {missing}"

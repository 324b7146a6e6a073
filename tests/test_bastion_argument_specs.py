"""The bastion role refuses bad variable values with a clear message, before it changes anything:
the role runs for real (ansible-playbook on the controller, in check mode so a validation that
wrongly passed could still not harden the controller) and must fail at validation."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def run_role(tmp_path, variables):
    play = [{"name": "bastion validation", "hosts": "localhost", "gather_facts": True, "become": False,
             "roles": [{"role": "ec2fleet.fleet.bastion", **variables}]}]
    path = tmp_path / "play.yml"
    path.write_text(json.dumps(play))
    env = dict(os.environ, ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0")
    result = subprocess.run(["ansible-playbook", "--check", str(path)], cwd=REPO, env=env, capture_output=True, text=True,
                            timeout=300)
    return result.returncode, " ".join((result.stdout + result.stderr).split())


@pytest.mark.parametrize(
    ("variables", "message"),
    [
        ({"bastion_fail2ban_mode": "sometimes"},
         "value of bastion_fail2ban_mode must be one of: normal, ddos, extra, aggressive, got: sometimes"),
        ({"bastion_ssh_port": "twenty-two"}, "bastion_ssh_port"),
        ({"bastion_ssh_rsa_host_key_bits": 1024},
         "value of bastion_ssh_rsa_host_key_bits must be one of: 3072, 4096, got: 1024"),
        # Keys are optional (a jump user may log in with certificates only); a name is not.
        ({"bastion_jump_users": [{"authorized_keys": []}]}, "missing required arguments: name"),
        ({"bastion_session_logging": "perhaps"}, "bastion_session_logging"),
    ],
    ids=["choice", "int", "rsa-bits", "jump-user-without-name", "bool"],
)
def test_argument_specs_reject_bad_values(tmp_path, variables, message):
    rc, out = run_role(tmp_path, variables)
    assert rc != 0
    assert "Validation of arguments failed" in out, out[-3000:]
    assert message in out, out[-3000:]


@pytest.mark.parametrize(
    ("variables", "message"),
    [
        ({"bastion_jump_allowed_networks": ["10.0.0.0/16", "10.1.0.0"]}, "got ['10.1.0.0']"),
        ({"bastion_ssh_port": 70000}, "bastion_ssh_port/bastion_jump_port in 1-65535"),
        ({"bastion_ssh_max_auth_tries": 12}, "bastion_ssh_max_auth_tries in 1-6"),
        ({"bastion_jump_users": [{"name": "alice", "authorized_keys": ["not a key"]}]}, "ed25519/RSA public keys"),
        ({"bastion_jump_users": [{"name": "alice", "principals": ["alice,admin"]}]}, "principals without spaces or commas"),
    ],
    ids=["network-not-cidr", "port-range", "max-auth-tries", "bad-key", "principal-with-comma"],
)
def test_range_and_format_checks_fail_before_any_change(tmp_path, variables, message):
    rc, out = run_role(tmp_path, variables)
    assert rc != 0
    assert "bastion: invalid variable value" in out, out[-3000:]
    assert message in out, out[-3000:]
    # Validation stops the role before its first change on the host.
    assert "changed=0" in out, out[-3000:]

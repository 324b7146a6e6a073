"""The ops tooling's side of the SSH CAs: the fleet's @cert-authority lines in known_hosts
(ec2fleet.known_hosts) and operators' user certificates under a policy (ec2fleet.user_certs)."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest
from ansible_collections.ec2fleet.fleet.plugins.module_utils import ssh_ca
from deploy_support import client
from ssh_support import keygen

from ec2fleet import known_hosts, user_certs


@pytest.mark.parametrize("cidr,patterns", [
    ("10.213.0.0/16", ["10.213.*"]),
    ("10.0.0.0/8", ["10.*"]),
    ("172.31.16.0/20", [f"172.31.{n}.*" for n in range(16, 32)]),
    ("10.1.2.0/24", ["10.1.2.*"]),
    ("10.1.2.64/26", [str(f"10.1.2.{n}") for n in range(64, 128)]),
    ("10.1.2.9/32", ["10.1.2.9"]),
    ("10.1.2.9/16", ["10.1.*"]),  # host bits are ignored, as AWS does for a VPC's CIDR
])
def test_ranges_become_exact_known_hosts_patterns(cidr, patterns):
    assert known_hosts.cidr_patterns(cidr) == patterns


@pytest.mark.parametrize("cidr,message", [
    ("10.0.0.0/33", "not an address range"),
    ("fd00::/64", "only IPv4 ranges"),
    ("banana", "not an address range"),
])
def test_bad_ranges_are_refused_in_one_line(cidr, message):
    with pytest.raises(ssh_ca.CertError, match=message):
        known_hosts.cidr_patterns(cidr)


def test_lines_are_replaced_per_fleet_and_nothing_else_moves(tmp_path):
    old, new = keygen(tmp_path / "old"), keygen(tmp_path / "new")
    path = tmp_path / "ssh" / "known_hosts"
    path.parent.mkdir()
    path.write_text("bastion.example ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOther\n")
    assert known_hosts.write(path, "prod", known_hosts.ca_lines("prod", ["10.0.0.0/16"], ["i-*"], [old, new]))
    text = path.read_text().splitlines()
    assert text[0].startswith("bastion.example ")
    assert text[1].startswith("@cert-authority 10.0.*,i-* ssh-ed25519 ") and text[1].endswith(" ec2fleet-host-ca:prod")
    assert len(text) == 3
    # Rotation done: only the new CA; another fleet's lines stay.
    known_hosts.write(path, "staging", known_hosts.ca_lines("staging", ["10.9.0.0/16"], [], [old]))
    assert known_hosts.write(path, "prod", known_hosts.ca_lines("prod", ["10.0.0.0/16"], ["i-*"], [new]))
    lines = path.read_text().splitlines()
    assert [line.split()[-1] for line in lines[1:]] == ["ec2fleet-host-ca:staging", "ec2fleet-host-ca:prod"]
    assert new.split()[1] in lines[2] and old.split()[1] not in lines[2]
    assert known_hosts.write(path, "prod", known_hosts.ca_lines("prod", ["10.0.0.0/16"], ["i-*"], [new])) is False


def test_a_new_known_hosts_file_is_private(tmp_path):
    ca = keygen(tmp_path / "ca")
    path = tmp_path / "fresh" / "known_hosts"
    known_hosts.write(path, "local", known_hosts.ca_lines("local", ["10.213.0.0/16"], [], [ca]))
    assert path.stat().st_mode & 0o777 == 0o600 and path.parent.stat().st_mode & 0o777 == 0o700


def test_the_line_is_one_openssh_accepts(tmp_path):
    ca = keygen(tmp_path / "ca")
    path = tmp_path / "known_hosts"
    known_hosts.write(path, "f", known_hosts.ca_lines("f", ["10.213.0.0/16"], [], [ca]))
    found = subprocess.run(["ssh-keygen", "-F", "10.213.4.5", "-f", str(path)], capture_output=True, text=True)
    assert found.returncode == 0 and "@cert-authority" in found.stdout
    assert subprocess.run(["ssh-keygen", "-F", "10.214.4.5", "-f", str(path)], capture_output=True).returncode == 1


# --- operators' certificates -------------------------------------------------------------------

@pytest.fixture
def operator(tmp_path):
    keygen(tmp_path / "ca")
    keygen(tmp_path / "id_ed25519")
    policy = tmp_path / "policy.yml"
    policy.write_text("operators:\n  alice: {principals: [alice, jump-alice], max_hours: 6}\n"
                      "  bob: {principals: [jump-bob]}\n")
    return {"dir": tmp_path, "grants": user_certs.load_policy(policy), "ca": str(tmp_path / "ca"),
            "key": tmp_path / "id_ed25519.pub"}


def test_an_operator_gets_a_short_certificate_with_the_allowed_principals(operator):
    now = time.time()
    issued = user_certs.issue(operator["grants"], "alice", operator["key"], operator["ca"], hours=2, now=now)
    assert issued["path"] == str(operator["dir"] / "id_ed25519-cert.pub")
    cert = ssh_ca.parse_certificate((operator["dir"] / "id_ed25519-cert.pub").read_text())
    assert cert["type"] == "user" and cert["principals"] == ["alice", "jump-alice"]
    assert cert["valid_before"] - now == pytest.approx(7200, abs=1)
    assert cert["extensions"] == ["permit-port-forwarding", "permit-pty"]
    assert cert["key_id"].startswith("alice@")
    one = user_certs.issue(operator["grants"], "alice", operator["key"], operator["ca"], principals=["jump-alice"])
    assert one["principals"] == ["jump-alice"]


@pytest.mark.parametrize("identity,kwargs,message", [
    ("mallory", {}, "mallory is not an operator of the certificate policy (alice, bob)"),
    ("bob", {"principals": ["alice"]}, "bob may not have the principal(s) alice (allowed: jump-bob)"),
    ("alice", {"hours": 7}, "alice: certificates last 1 to 6 hours, not 7"),
    ("bob", {"hours": 9}, "bob: certificates last 1 to 8 hours, not 9"),
])
def test_the_policy_refuses_in_one_line(operator, identity, kwargs, message):
    with pytest.raises(ssh_ca.CertError) as failure:
        user_certs.issue(operator["grants"], identity, operator["key"], operator["ca"], **kwargs)
    assert str(failure.value) == message
    assert not (operator["dir"] / "id_ed25519-cert.pub").exists()


@pytest.mark.parametrize("content,message", [
    ("", "expected `operators:"),
    ("operators:\n  alice: {}\n", "operator alice needs a list of principals"),
    ("operators:\n  alice: {principals: [a], max_hours: 48}\n", "max_hours must be 1-24"),
])
def test_a_bad_policy_names_the_file(tmp_path, content, message):
    path = tmp_path / "policy.yml"
    path.write_text(content)
    with pytest.raises(ssh_ca.CertError, match=message) as failure:
        user_certs.load_policy(path)
    assert str(path) in str(failure.value)


def test_ca_key_comes_from_exactly_one_place(tmp_path):
    with pytest.raises(ssh_ca.CertError, match="exactly one of"), user_certs.ca_key():
        pass
    with user_certs.ca_key(path=str(tmp_path / "ca")) as path:
        assert path == str(tmp_path / "ca")


@pytest.mark.emulator
def test_ca_key_from_ssm_lives_only_while_it_is_used(aws, tmp_path):
    keygen(tmp_path / "ca")
    client("ssm").put_parameter(Name="/fleet/ssh/user-ca", Value=(tmp_path / "ca").read_text(), Type="SecureString")
    with user_certs.ca_key(ssm_parameter="/fleet/ssh/user-ca") as path:
        assert Path(path).read_text() == (tmp_path / "ca").read_text()
        assert ssh_ca.same_key(ssh_ca.ca_public_key(path), (tmp_path / "ca.pub").read_text())
    assert not os.path.exists(path)
    with pytest.raises(ssh_ca.CertError, match="read the CA key /fleet/ssh/none"), \
            user_certs.ca_key(ssm_parameter="/fleet/ssh/none"):
        pass

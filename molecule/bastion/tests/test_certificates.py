"""SSH certificates on the bastion and its private target, after side_effect.yml rotated both CAs
(host CA old -> new; user CAs old and new trusted during the overlap).

Host side: each host serves a certificate of the host CA; a controller with nothing but the CA's
@cert-authority line checks it strictly, through ProxyJump too; a forged host key at a known
address is refused. User side: certificates issued by the project's tool (ec2fleet.user_certs)
open the bastion and ProxyJump; expired and revoked ones (KRL, by key and by key id) do not; a
jump-only principal gets no shell and no admin account.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
from ansible_collections.ec2fleet.fleet.plugins.module_utils import ssh_ca
from conftest import BASTION, PORT, PRIVATE, ca_known_hosts, effective, ssh, write_ssh_config

from ec2fleet import ops, user_certs

testinfra_hosts = [BASTION]


@pytest.fixture(scope="module")
def grants(tmp_path_factory):
    policy = tmp_path_factory.mktemp("policy") / "operators.yml"
    policy.write_text("operators:\n  ops: {principals: [opsadmin]}\n  jump: {principals: [jumper]}\n")
    return user_certs.load_policy(policy)


def signed(keys: Path, key: str, path: Path, principals: list[str], ca: str = "user_ca_new",
           key_id: str = "molecule", now: float | None = None, valid_for: int = 3600) -> Path:
    """A user certificate of keys/<key> written to `path` (for -o CertificateFile)."""
    now = time.time() if now is None else now
    path.write_text(ssh_ca.sign(str(keys / ca), (keys / f"{key}.pub").read_text(), cert_type="user",
                                principals=principals, key_id=key_id, serial=ssh_ca.new_serial(now),
                                valid_for=valid_for, now=now, options=["clear", "permit-pty"]) + "\n")
    return path


def login(keys, known_hosts, tmp_path, key, cert, user="opsadmin", command="id -un"):
    """Log in offering only keys/<key> (in no authorized_keys file) and its certificate `cert`:
    what gets in is the certificate."""
    config = write_ssh_config(tmp_path / f"config-{key}", keys, known_hosts, identity=key)
    return ssh(config, "-o", f"CertificateFile={cert}", f"{user}@bastion", command)


# --- host certificates -----------------------------------------------------------------------------

@pytest.mark.parametrize("name", [BASTION, PRIVATE])
def test_each_host_serves_a_certificate_of_the_new_host_ca(host, keys, name):
    target = host.get_host(f"docker://{name}")
    cert = ssh_ca.parse_certificate(target.file("/etc/ssh/ssh_host_ed25519_key-cert.pub").content_string)
    assert cert["type"] == "host"
    assert ssh_ca.same_key(cert["signing_ca"], (keys / "host_ca_new.pub").read_text())
    assert ssh_ca.same_key(cert["public_key"], target.file("/etc/ssh/ssh_host_ed25519_key.pub").content_string)
    address = next(a for a in target.interface("eth0").addresses if ":" not in a)
    assert {name, address} <= set(cert["principals"])
    assert not [p for p in cert["principals"] if p.startswith("127.")]
    assert 29 * 86400 < cert["valid_before"] - time.time() <= 30 * 86400


def test_strict_host_key_checking_from_a_known_hosts_with_only_the_ca_line(ssh_config, known_hosts, private_ip):
    before = known_hosts.read_text()
    assert all(line.startswith("@cert-authority ") for line in before.splitlines())
    result = ssh(ssh_config, "-J", "jumper@bastion", f"jumper@{private_ip}", "hostname")
    assert result.returncode == 0, result.stderr
    assert known_hosts.read_text() == before  # nothing learnt, nothing to go stale at a reused address


def test_the_old_host_ca_alone_no_longer_vouches_for_the_rotated_hosts(keys, network_cidr, tmp_path):
    old_only = ca_known_hosts(tmp_path / "known_hosts", keys, network_cidr, "host_ca_old")
    result = ssh(write_ssh_config(tmp_path / "config", keys, old_only), "jumper@bastion", "true")
    assert result.returncode == 255 and "Host key verification failed" in result.stderr, result.stderr


@pytest.fixture
def forged_sshd(host, keys, tmp_path):
    """A second sshd on the private host's address (port 2222) with a key of its own; `rogue` gives
    it a certificate of a CA nobody trusts, for the private host's own address."""
    private = host.get_host(f"docker://{PRIVATE}")
    private.run("rm -f /tmp/forged /tmp/forged.pub /tmp/forged-cert.pub")
    private.check_output("ssh-keygen -q -t ed25519 -N '' -f /tmp/forged")

    def start(rogue: bool, address: str) -> None:
        options = ""
        if rogue:
            now = time.time()
            cert = ssh_ca.sign(str(keys / "rogue_ca"), private.file("/tmp/forged.pub").content_string,
                               cert_type="host", principals=[address, PRIVATE], key_id="forged", serial=1,
                               valid_for=3600, now=now)
            private.check_output(f"printf '%s\\n' '{cert}' > /tmp/forged-cert.pub")
            options = "-o HostCertificate=/tmp/forged-cert.pub"
        private.check_output(f"/usr/sbin/sshd -p 2222 -h /tmp/forged {options} -o PidFile=/tmp/forged.pid")

    yield start
    private.run("kill $(cat /tmp/forged.pid) 2>/dev/null; rm -f /tmp/forged.pid")


@pytest.mark.parametrize("rogue", [False, True], ids=["unknown-key", "rogue-ca-certificate"])
def test_a_forged_host_key_at_a_known_address_is_refused(forged_sshd, ssh_config, private_ip, rogue):
    forged_sshd(rogue, private_ip)
    # Looked up as the private host's own address, whose real key the CA vouches for.
    result = ssh(ssh_config, "-p", "2222", "-o", f"HostKeyAlias={private_ip}", f"jumper@{private_ip}", "true")
    assert result.returncode == 255
    assert "Host key verification failed" in result.stderr, result.stderr
    # The real host at the same address is still accepted.
    assert ssh(ssh_config, "-J", "jumper@bastion", f"jumper@{private_ip}", "true").returncode == 0


def test_the_ops_cli_checks_host_certificates_strictly(keys, known_hosts, network_cidr, tmp_path):
    # `tools/fleet run|logs|status` reach hosts through ops.SshSession (OpenSSH, not Paramiko).
    def bastion(known):
        return ops.Host(BASTION, {"ansible_host": "127.0.0.1", "ansible_port": PORT, "ansible_user": "opsadmin",
                                  "ansible_ssh_private_key_file": str(keys / "admin"),
                                  "ansible_ssh_common_args": f"-o HostKeyAlias={BASTION} -o UserKnownHostsFile={known} "
                                                             "-o GlobalKnownHostsFile=/dev/null -o IdentitiesOnly=yes"})
    code, out = ops.run_parallel([bastion(known_hosts)], "id -un")[BASTION]
    assert code == 0 and out.splitlines()[-1] == "opsadmin", out
    old_only = ca_known_hosts(tmp_path / "known_hosts", keys, network_cidr, "host_ca_old")
    code, out = ops.run_parallel([bastion(old_only)], "id -un")[BASTION]
    assert code == 255 and "Host key verification failed" in out, out


# --- user certificates -----------------------------------------------------------------------------

def key_id_logged(host, key_id: str) -> bool:
    # LogLevel VERBOSE: sshd names the certificate (ID, serial, CA) of every accepted login.
    return f"ID {key_id} " in host.check_output("journalctl -u ssh --no-pager -o cat -n 2000")


def test_an_operator_certificate_from_the_tool_opens_the_bastion(host, keys, known_hosts, grants, tmp_path):
    issued = user_certs.issue(grants, "ops", keys / "opscert.pub", str(keys / "user_ca_new"), hours=1)
    result = login(keys, known_hosts, tmp_path, "opscert", issued["path"])
    assert result.returncode == 0 and result.stdout.strip() == "opsadmin", result.stderr
    assert key_id_logged(host, issued["key_id"])


def test_a_jump_certificate_opens_proxyjump(host, keys, known_hosts, grants, private_ip, tmp_path):
    issued = user_certs.issue(grants, "jump", keys / "jumpcert.pub", str(keys / "user_ca_new"), hours=1)
    # On the bastion only the certificate's key (in no authorized_keys) is offered.
    config = write_ssh_config(tmp_path / "config", keys, known_hosts, identity="jumper", bastion_identity="jumpcert")
    result = ssh(config, "-J", "jumper@bastion", f"jumper@{private_ip}", "id -un")
    assert result.returncode == 0 and result.stdout.strip() == "jumper", result.stderr
    assert key_id_logged(host, issued["key_id"])


def test_a_jump_only_principal_gets_no_shell_and_no_admin_account(keys, known_hosts, tmp_path):
    cert = signed(keys, "jumpcert", tmp_path / "jump-cert.pub", ["jumper"])
    shell = login(keys, known_hosts, tmp_path, "jumpcert", cert, user="jumper", command="id")
    assert shell.returncode != 0 and "uid=" not in shell.stdout
    assert "not available" in shell.stdout + shell.stderr  # nologin
    admin = login(keys, known_hosts, tmp_path, "jumpcert", cert, user="opsadmin")
    assert admin.returncode == 255 and "Permission denied" in admin.stderr


def test_the_old_user_ca_still_opens_the_bastion_during_the_overlap(keys, known_hosts, tmp_path):
    cert = signed(keys, "oldcert", tmp_path / "old-cert.pub", ["opsadmin"], ca="user_ca_old")
    result = login(keys, known_hosts, tmp_path, "oldcert", cert)
    assert result.returncode == 0 and result.stdout.strip() == "opsadmin", result.stderr


@pytest.mark.parametrize("case", ["expired", "rogue-ca", "revoked-key", "revoked-key-id"])
def test_expired_untrusted_and_revoked_certificates_are_refused(keys, known_hosts, tmp_path, case):
    key, kwargs = {
        "expired": ("expired", {"now": time.time() - 2 * 86400}),
        "rogue-ca": ("expired", {"ca": "rogue_ca"}),
        "revoked-key": ("revoked", {}),
        "revoked-key-id": ("byid", {"key_id": "molecule-revoked-id"}),
    }[case]
    cert = signed(keys, key, tmp_path / "cert.pub", ["opsadmin"], **kwargs)
    result = login(keys, known_hosts, tmp_path, key, cert)
    assert result.returncode == 255 and "Permission denied" in result.stderr, result.stderr


def test_the_same_key_with_another_key_id_gets_in(keys, known_hosts, tmp_path):
    # What refused the key id above was the KRL, not the key or the CA.
    cert = signed(keys, "byid", tmp_path / "cert.pub", ["opsadmin"], key_id="molecule-fine-id")
    assert login(keys, known_hosts, tmp_path, "byid", cert).returncode == 0


def test_sshd_applies_the_certificate_settings(host, keys):
    cfg = effective(host)
    assert cfg["hostcertificate"] == "/etc/ssh/ssh_host_ed25519_key-cert.pub"
    assert cfg["trustedusercakeys"] == "/etc/ssh/user_ca_keys.pub"
    assert cfg["authorizedprincipalsfile"] == "/etc/ssh/auth_principals/%u"
    assert cfg["revokedkeys"] == "/etc/ssh/revoked_keys"
    assert effective(host, "user=jumper,host=client,addr=192.0.2.10")["authorizedprincipalsfile"] == \
        "/etc/ssh/jump_principals/%u"
    trusted = host.file("/etc/ssh/user_ca_keys.pub").content_string.split("\n")
    assert [line.split()[1] for line in trusted if line] == \
        [(keys / f"{ca}.pub").read_text().split()[1] for ca in ("user_ca_old", "user_ca_new")]
    assert host.file("/etc/ssh/auth_principals/opsadmin").content_string == "opsadmin\n"
    assert host.file("/etc/ssh/jump_principals/jumper").content_string == "jumper\n"
    revoked = (keys / "revoked.pub").read_text().strip()
    check = host.run(f"printf '%s\\n' '{revoked}' > /tmp/revoked.pub && ssh-keygen -Q -f /etc/ssh/revoked_keys /tmp/revoked.pub")
    assert check.rc == 1 and "REVOKED" in check.stdout
    assert re.search(r"(?m)^id: molecule-revoked-id$", host.check_output("ssh-keygen -Q -l -f /etc/ssh/revoked_keys"))


def test_nothing_else_in_known_hosts_was_needed(known_hosts):
    # The controller's known_hosts after every login above: still only the CA lines.
    assert [line.split()[0] for line in known_hosts.read_text().splitlines()] == ["@cert-authority"] * 2


def test_the_ca_keys_never_reached_a_host(host):
    for name in (BASTION, PRIVATE):
        found = host.get_host(f"docker://{name}").run("grep -rl 'OPENSSH PRIVATE KEY' /etc/ssh /root /tmp 2>/dev/null"
                                                        " | grep -v -e ssh_host_ -e /tmp/forged")
        assert found.stdout.strip() == "", found.stdout

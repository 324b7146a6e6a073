"""The common role's baseline on the converged host, after side_effect.yml dropped bob.

Admins in the scenario (molecule/common/vars/admins.yml): alice (two keys, sudo), carol (one key,
sudo: false, /bin/sh), bob (removed by the side effect), dave (listed absent). prepare.yml made
mallory (supplementary member of fleetadmins) and eve (primary group fleetadmins) to be removed,
and gave alice a stale key.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from pathlib import Path

import pytest
import yaml
from ansible_collections.ec2fleet.fleet.plugins.module_utils import ssh_ca

from ec2fleet import known_hosts as known_hosts_file

PROJECT = Path(os.environ.get("MOLECULE_PROJECT_DIRECTORY", Path(__file__).resolve().parents[3]))
KEYS = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"]) / "keys"
ROLE_DEFAULTS = yaml.safe_load((PROJECT / "roles/common/defaults/main.yml").read_text())

ADMINS = {"alice": ["alice", "alice-laptop"], "carol": ["carol"]}
REMOVED = ["bob", "mallory", "eve", "dave"]
BASELINE = "/etc/ssh/sshd_config.d/50-common-baseline.conf"


def pubkey(name: str) -> str:
    return (KEYS / f"{name}.pub").read_text().strip()


# --- packages ---------------------------------------------------------------------------------


@pytest.mark.parametrize("package", ROLE_DEFAULTS["common_packages"] + ["tree"])
def test_base_and_extra_packages_installed(host, package):
    assert host.package(package).is_installed


# --- time -------------------------------------------------------------------------------------


def test_timezone_is_utc(host):
    # prepare.yml set America/New_York, so this is the role's doing.
    assert host.check_output("timedatectl show --property=Timezone --value") == "Etc/UTC"
    assert host.file("/etc/localtime").linked_to == "/usr/share/zoneinfo/Etc/UTC"
    assert host.check_output("date +%Z") == "UTC"


def test_timesyncd_configured_and_enabled(host):
    assert host.package("systemd-timesyncd").is_installed
    dropin = host.file("/etc/systemd/timesyncd.conf.d/50-common.conf")
    assert dropin.mode == 0o644
    assert "NTP=169.254.169.123\n" in dropin.content_string
    assert "FallbackNTP=0.debian.pool.ntp.org" in dropin.content_string
    merged = host.check_output("systemd-analyze cat-config systemd/timesyncd.conf")
    assert "NTP=169.254.169.123" in merged
    assert host.service("systemd-timesyncd").is_enabled


def test_timesyncd_container_case(host):
    # The explicit container case: systemd itself refuses to start the unit in a container
    # (ConditionVirtualization=!container), and the role does not try.
    assert host.run("systemd-detect-virt --container").rc == 0
    state = host.check_output("systemctl show --property=ActiveState,ConditionResult systemd-timesyncd")
    assert "ActiveState=inactive" in state
    assert "ConditionResult=no" in state


# --- journald ---------------------------------------------------------------------------------


def test_journald_dropin(host):
    dropin = host.file("/etc/systemd/journald.conf.d/50-common.conf")
    assert dropin.mode == 0o644
    assert "Storage=persistent\n" in dropin.content_string
    assert "SystemMaxUse=48M\n" in dropin.content_string


def test_journald_persists_with_the_cap(host):
    machine_id = host.file("/etc/machine-id").content_string.strip()
    assert host.file(f"/var/log/journal/{machine_id}/system.journal").is_file
    # journald reports the cap it applies each time it opens the system journal; the last
    # report (after the role's restart) must carry 48M, not the 4G default seen at boot.
    reports = host.check_output(
        "journalctl --unit=systemd-journald --output=cat --no-pager | grep 'System Journal'"
    ).splitlines()
    assert reports, "journald never reported on the system journal"
    assert re.search(r"max 48\.0M", reports[-1]), reports[-1]


# --- unattended upgrades ----------------------------------------------------------------------


def test_unattended_upgrades_security_origin_only(host):
    assert host.package("unattended-upgrades").is_installed
    dump = host.check_output("apt-config dump Unattended-Upgrade::Origins-Pattern")
    origins = re.findall(r'^Unattended-Upgrade::Origins-Pattern:: "(.+)";$', dump, re.MULTILINE)
    assert sorted(origins) == sorted(ROLE_DEFAULTS["common_unattended_upgrades_origins"])
    assert all("label=Debian-Security" in origin for origin in origins)


def test_unattended_upgrades_periodic_settings(host):
    dump = host.check_output("apt-config dump APT::Periodic")
    assert 'APT::Periodic::Update-Package-Lists "1";' in dump
    assert 'APT::Periodic::Unattended-Upgrade "1";' in dump
    assert 'APT::Periodic::AutocleanInterval "7";' in dump
    reboot = host.check_output("apt-config dump Unattended-Upgrade::Automatic-Reboot")
    assert 'Unattended-Upgrade::Automatic-Reboot "false";' in reboot
    assert "unattended-upgrades/enable_auto_updates: true" in host.check_output(
        "debconf-show unattended-upgrades"
    )


@pytest.mark.parametrize("timer", ["apt-daily.timer", "apt-daily-upgrade.timer"])
def test_apt_timers_enabled(host, timer):
    assert host.service(timer).is_enabled
    assert host.service(timer).is_running


# --- users, keys, sudo ------------------------------------------------------------------------


def test_admin_group_holds_exactly_the_listed_admins(host):
    assert host.group("fleetadmins").exists
    members = host.check_output("getent group fleetadmins").split(":")[3]
    assert sorted(members.split(",")) == sorted(ADMINS)


@pytest.mark.parametrize("name,shell", [("alice", "/bin/bash"), ("carol", "/bin/sh")])
def test_admin_accounts(host, name, shell):
    user = host.user(name)
    assert user.exists
    assert user.shell == shell
    assert "fleetadmins" in user.groups
    assert host.file(user.home).is_directory


@pytest.mark.parametrize("name", sorted(ADMINS))
def test_authorized_keys_hold_exactly_the_listed_keys(host, name):
    keys = host.file(f"/home/{name}/.ssh/authorized_keys")
    assert keys.user == name
    assert keys.mode == 0o600
    assert host.file(f"/home/{name}/.ssh").mode == 0o700
    present = [line for line in keys.content_string.splitlines() if line and not line.startswith("#")]
    assert sorted(present) == sorted(pubkey(key) for key in ADMINS[name])


def test_stale_key_removed(host):
    assert pubkey("stale") not in host.file("/home/alice/.ssh/authorized_keys").content_string


@pytest.mark.parametrize("name", REMOVED)
def test_removed_accounts_gone(host, name):
    assert not host.user(name).exists
    assert not host.file(f"/home/{name}").exists


def test_sudoers_dropin_valid(host):
    rule = host.file("/etc/sudoers.d/50-common-admins")
    assert rule.mode == 0o440
    assert rule.user == "root"
    assert re.search(r"^%fleetadmins, !carol ALL=\(ALL:ALL\) NOPASSWD: ALL$", rule.content_string, re.MULTILINE)
    assert host.run("visudo -c").rc == 0


def test_sudo_rights(host):
    assert "(ALL : ALL) NOPASSWD: ALL" in host.check_output("sudo -l -U alice")
    assert "is not allowed to run sudo" in host.check_output("sudo -l -U carol")


# --- sshd -------------------------------------------------------------------------------------


def test_sshd_baseline_dropin(host):
    dropin = host.file(BASELINE)
    assert dropin.user == "root"
    assert dropin.mode == 0o644
    for line in ("PermitRootLogin no", "PasswordAuthentication no", "KbdInteractiveAuthentication no"):
        assert f"\n{line}\n" in dropin.content_string


def test_sshd_config_valid_and_applied(host):
    assert host.run("sshd -t").rc == 0
    effective = host.check_output("sshd -T")
    for line in ("permitrootlogin no", "passwordauthentication no", "kbdinteractiveauthentication no"):
        assert line in effective.splitlines()
    assert host.service("ssh").is_running


def test_sshd_config_main_file_untouched(host):
    # The role only drops a file; Debian's sshd_config (and its Include) stays the package's.
    assert host.run("cmp /etc/ssh/sshd_config /usr/share/openssh/sshd_config").rc == 0
    assert "Include /etc/ssh/sshd_config.d/*.conf" in host.file("/etc/ssh/sshd_config").content_string


# --- real SSH logins from the controller (the container's bridge address) --------------------


@pytest.fixture(scope="module")
def address(host):
    return next(a for a in host.interface("eth0").addresses if ":" not in a)


@pytest.fixture(scope="module", autouse=True)
def known_hosts(address, tmp_path_factory):
    """The controller trusts the host CA alone (the fleet's @cert-authority line), nothing per host."""
    global KNOWN_HOSTS
    KNOWN_HOSTS = tmp_path_factory.mktemp("kh") / "known_hosts"
    known_hosts_file.write(KNOWN_HOSTS, "molecule", known_hosts_file.ca_lines(
        "molecule", [f"{address}/32"], [], [pubkey("host_ca")]))
    return KNOWN_HOSTS


KNOWN_HOSTS: Path | None = None


def ssh(address: str, user: str, key: str | None, command: str, *options: str,
        known_hosts: Path | None = None) -> subprocess.CompletedProcess:
    args = [
        "ssh", "-F", "/dev/null", "-o", "BatchMode=yes", "-o", "ConnectTimeout=10",
        "-o", "StrictHostKeyChecking=yes", "-o", f"UserKnownHostsFile={known_hosts or KNOWN_HOSTS}",
        "-o", "GlobalKnownHostsFile=/dev/null", "-o", "IdentitiesOnly=yes", "-o", "LogLevel=ERROR", *options,
    ]
    if key:
        args += ["-i", str(KEYS / key)]
    return subprocess.run([*args, f"{user}@{address}", command], capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("key", ADMINS["alice"])
def test_admin_logs_in_with_each_key_and_sudoes(address, key):
    result = ssh(address, "alice", key, "sudo -n id -u")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "0"


def test_admin_without_sudo_logs_in_but_cannot_sudo(address):
    assert ssh(address, "carol", "carol", "true").returncode == 0
    assert ssh(address, "carol", "carol", "sudo -n true").returncode != 0


# prepare.yml authorized the stale key for root too: only PermitRootLogin no stops that login.
@pytest.mark.parametrize("user,key", [("bob", "bob"), ("alice", "stale"), ("root", "stale")])
def test_refused_logins(address, user, key):
    result = ssh(address, user, key, "true")
    assert result.returncode == 255
    assert "Permission denied" in result.stderr


def test_only_publickey_offered(address):
    # With no key, the server lists what it would accept: passwords must not be among them.
    result = ssh(address, "alice", None, "true", "-o", "PreferredAuthentications=password,keyboard-interactive")
    assert result.returncode == 255
    assert "Permission denied (publickey)." in result.stderr


# --- SSH certificates (vars/certificates.yml) -------------------------------------------------


def test_host_certificate_from_the_host_ca(host, address):
    cert = ssh_ca.parse_certificate(host.file("/etc/ssh/ssh_host_ed25519_key-cert.pub").content_string)
    assert cert["type"] == "host" and ssh_ca.same_key(cert["signing_ca"], pubkey("host_ca"))
    assert address in cert["principals"]
    assert "hostcertificate /etc/ssh/ssh_host_ed25519_key-cert.pub" in host.check_output("sshd -T").splitlines()


def test_a_host_key_the_ca_did_not_sign_is_refused(address, tmp_path):
    # Same address, same known_hosts, but a CA line of another CA: the host is not trusted.
    other = tmp_path / "known_hosts"
    known_hosts_file.write(other, "other", known_hosts_file.ca_lines("other", [f"{address}/32"], [], [pubkey("user_ca")]))
    result = ssh(address, "carol", "carol", "true", known_hosts=other)
    assert result.returncode == 255 and "Host key verification failed" in result.stderr


def user_certificate(tmp_path, principals: list[str]) -> Path:
    path = tmp_path / "alice-cert-cert.pub"
    now = time.time()
    path.write_text(ssh_ca.sign(str(KEYS / "user_ca"), pubkey("alice-cert"), cert_type="user", principals=principals,
                                key_id="molecule-alice", serial=1, valid_for=600, now=now) + "\n")
    return path


@pytest.mark.parametrize("principal", ["alice", "oncall"])
def test_a_user_certificate_with_one_of_the_admins_principals_logs_in(address, tmp_path, principal):
    cert = user_certificate(tmp_path, [principal])
    result = ssh(address, "alice", "alice-cert", "id -un", "-o", f"CertificateFile={cert}")
    assert result.returncode == 0 and result.stdout.strip() == "alice", result.stderr


def test_a_user_certificate_without_the_accounts_principal_is_refused(address, tmp_path):
    cert = user_certificate(tmp_path, ["alice", "oncall"])
    result = ssh(address, "carol", "alice-cert", "true", "-o", f"CertificateFile={cert}")
    assert result.returncode == 255 and "Permission denied" in result.stderr


def test_principals_files_follow_the_admin_list(host):
    assert host.file("/etc/ssh/auth_principals/alice").content_string == "alice\noncall\n"
    assert host.file("/etc/ssh/auth_principals/carol").content_string == "carol\n"
    assert not host.file("/etc/ssh/auth_principals/bob").exists  # dropped by the side effect

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
from pathlib import Path

import pytest
import yaml

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


def ssh(address: str, user: str, key: str | None, command: str, *options: str) -> subprocess.CompletedProcess:
    args = [
        "ssh", "-F", "/dev/null", "-o", "BatchMode=yes", "-o", "ConnectTimeout=10",
        "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
        "-o", "IdentitiesOnly=yes", "-o", "LogLevel=ERROR", *options,
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

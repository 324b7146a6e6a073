"""What every converged host of the fleet must show (site.yml's promises), checked on the host."""

import json

import pytest

APP = "sampleapp"


def test_baseline(host):
    assert host.file("/etc/timezone").content_string.strip() in ("Etc/UTC", "UTC")
    assert host.file("/var/log/journal").is_directory, "journald must be persistent"
    assert host.group("fleetadmins").exists
    assert host.file("/etc/ssh/sshd_config.d/50-common-baseline.conf").exists
    with host.sudo():
        effective = host.check_output("sshd -T")
    assert "permitrootlogin no" in effective
    assert "passwordauthentication no" in effective
    assert host.service("ssh").is_running


def test_unattended_security_upgrades(host):
    assert host.package("unattended-upgrades").is_installed
    periodic = host.file("/etc/apt/apt.conf.d/20auto-upgrades").content_string
    assert 'APT::Periodic::Unattended-Upgrade "1"' in periodic


def test_bastion_is_hardened(host, groups):
    if "bastion" not in groups:
        pytest.skip("not a bastion")
    with host.sudo():
        effective = host.check_output("sshd -T")
        assert host.service("fail2ban").is_running
        jail = host.check_output("fail2ban-client status sshd")
    assert "kbdinteractiveauthentication no" in effective
    assert "allowgroups" in effective
    assert "Currently banned" in jail


def test_web_tier_serves_the_recorded_release(host, groups):
    if "role_web" not in groups:
        pytest.skip("not a web host")
    assert host.service("nginx").is_running
    assert host.service(APP).is_running
    current = host.file(f"/opt/{APP}/current").linked_to.rstrip("/").rsplit("/", 1)[-1]
    answer = json.loads(host.check_output("curl -fsS http://127.0.0.1/version"))
    assert answer["version"] == current
    health = host.run("curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1/health")
    assert health.stdout.strip() == "200"


def test_web_tier_runs_the_agents(host, groups):
    if "role_web" not in groups:
        pytest.skip("not a web host")
    assert host.service("amazon-cloudwatch-agent").is_running
    assert host.service("codedeploy-agent").is_running

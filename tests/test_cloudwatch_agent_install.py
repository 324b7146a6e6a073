"""cloudwatch_agent on a real systemd container, package served from a loopback HTTP server.

Only the agent package is a stand-in (the TEST DOUBLE of tests/doubles/); the download through
the controller, the GPG signature check (with a key generated here), apt/dpkg, systemd and the
agent control-script interface all run for real. Tests run in order on one container.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path

import pytest
from doubles import build
from doubles.harness import run_playbook, serve_directory, systemd_container

pytestmark = pytest.mark.docker
GOOD = "1.300099.0b1"
TAMPERED = "1.300100.0b1"
UPGRADE = "1.300101.0b1"
SOURCE = "/etc/amazon-cloudwatch-agent/amazon-cloudwatch-agent.json"
LOADED = "/opt/aws/amazon-cloudwatch-agent/etc/amazon-cloudwatch-agent.d/file_amazon-cloudwatch-agent.json"
CTL = "/opt/aws/amazon-cloudwatch-agent/bin/amazon-cloudwatch-agent-ctl"
PLAYBOOK = """
- hosts: all
  gather_facts: true
  roles:
    - ec2fleet.fleet.cloudwatch_agent
"""


@pytest.fixture(scope="module")
def world(tmp_path_factory, base_image):
    tmp = tmp_path_factory.mktemp("cwagent")
    fingerprint, public = build.make_signing_key(tmp / "aws-key")
    build.publish_cloudwatch_agent(tmp / "bucket", GOOD, tmp / "aws-key")
    # A package signed by some other key: must be refused.
    build.make_signing_key(tmp / "other-key")
    build.publish_cloudwatch_agent(tmp / "bucket", TAMPERED, tmp / "other-key")
    # Served from inside the host for the host-side download path (hosts reach no network here).
    build.publish_cloudwatch_agent(tmp / "host-bucket", UPGRADE, tmp / "aws-key")
    playbook = tmp / "site.yml"
    playbook.write_text(PLAYBOOK)
    with serve_directory(tmp / "bucket") as server, systemd_container(base_image, "cwagent-pytest") as host:
        base_vars = {
            "cloudwatch_agent_download_on_controller": True,
            "cloudwatch_agent_package_base_url": server.url,
            "cloudwatch_agent_controller_cache_dir": str(tmp / "cache"),
            "cloudwatch_agent_gpg_key": public.read_text(),
            "cloudwatch_agent_gpg_fingerprint": fingerprint,
            "cloudwatch_agent_version": GOOD,
            "cloudwatch_agent_env": "test",
        }

        def converge(**overrides):
            return run_playbook(playbook, inventory=host.inventory(tmp), extra_vars={**base_vars, **overrides})

        subprocess.run(["docker", "cp", str(tmp / "host-bucket"), f"{host.name}:/srv/bucket"], check=True)
        yield {"host": host, "server": server, "converge": converge}


def sha256(host, path):
    return hashlib.sha256(host.exec("cat", path).stdout.encode()).hexdigest()


def test_installs_verified_package_configures_and_starts(world):
    host = world["host"]
    run = world["converge"]()
    assert run.rc == 0, run.output[-4000:]
    prefix = f"/debian/{build.host_arch()}/{GOOD}/amazon-cloudwatch-agent.deb"
    assert {prefix, prefix + ".sig"} <= set(world["server"].requests)
    assert host.exec("dpkg-query", "-W", "-f=${Version}", "amazon-cloudwatch-agent").stdout == GOOD
    assert host.exec("systemctl", "is-active", "amazon-cloudwatch-agent").stdout.strip() == "active"
    assert host.exec("systemctl", "is-enabled", "amazon-cloudwatch-agent").stdout.strip() == "enabled"
    assert host.exec("cat", LOADED).stdout == host.exec("cat", SOURCE).stdout
    status = json.loads(host.exec(CTL, "-a", "status").stdout)
    assert status == {"status": "running", "configstatus": "configured", "version": GOOD, "test_double": True}


def test_same_pinned_version_downloads_and_changes_nothing(world):
    served_before = list(world["server"].requests)
    run = world["converge"]()
    assert run.rc == 0, run.output[-4000:]
    assert run.recap(world["host"].name)["changed"] == 0
    assert world["server"].requests == served_before


def test_package_signed_by_another_key_is_refused(world):
    host = world["host"]
    run = world["converge"](cloudwatch_agent_version=TAMPERED)
    assert run.rc != 0
    assert "Signature check FAILED" in run.output
    assert host.exec("dpkg-query", "-W", "-f=${Version}", "amazon-cloudwatch-agent").stdout == GOOD
    # The rejected download is not left behind for a later run to pick up.
    leftovers = host.exec("ls", "/var/cache/amazon-cloudwatch-agent").stdout.split()
    assert not any(TAMPERED in name for name in leftovers)


def test_invalid_configuration_fails_and_writes_nothing(world):
    host = world["host"]
    before = sha256(host, SOURCE)
    run = world["converge"](cloudwatch_agent_extra_logs=[
        {"file_path": "/var/log/x.log", "log_group_name": "/test/web/x", "timezone": "PST"}])
    assert run.rc != 0
    assert "does not match" in run.output and "timezone" in run.output
    assert sha256(host, SOURCE) == before
    assert host.exec("systemctl", "is-active", "amazon-cloudwatch-agent").stdout.strip() == "active"

    run = world["converge"](cloudwatch_agent_log_retention_days=42)
    assert run.rc != 0 and "cloudwatch_agent_log_retention_days" in run.output
    assert sha256(host, SOURCE) == before


def test_agent_fetch_config_rejects_invalid_config_and_keeps_the_loaded_one(world):
    host = world["host"]
    loaded_before = host.exec("cat", LOADED).stdout
    for bad in ('{"logs": ', json.dumps({"logs": {"logs_collected": {"files": {"collect_list": [
            {"file_path": "/x", "retention_in_days": 42}]}}}})):
        host.sh(f"cat > /tmp/bad.json <<'EOF'\n{bad}\nEOF")
        result = host.exec(CTL, "-a", "fetch-config", "-m", "ec2", "-c", "file:/tmp/bad.json", check=False)
        assert result.returncode == 1, result
        assert "validation" in result.stderr
        assert host.exec("cat", LOADED).stdout == loaded_before
        assert host.exec("ls", str(Path(LOADED).parent)).stdout.split() == [Path(LOADED).name]


def test_host_side_download_upgrades_to_a_new_pinned_version(world):
    # The production default: the host fetches package and signature itself (here from file://
    # inside the host), verifies, upgrades, and the agent restarts on the new version.
    host = world["host"]
    served_before = list(world["server"].requests)
    run = world["converge"](cloudwatch_agent_download_on_controller=False, cloudwatch_agent_version=UPGRADE,
                            cloudwatch_agent_package_base_url="file:///srv/bucket")
    assert run.rc == 0, run.output[-4000:]
    assert world["server"].requests == served_before
    assert host.exec("dpkg-query", "-W", "-f=${Version}", "amazon-cloudwatch-agent").stdout == UPGRADE
    assert json.loads(host.exec(CTL, "-a", "status").stdout)["version"] == UPGRADE
    assert host.exec("systemctl", "is-active", "amazon-cloudwatch-agent").stdout.strip() == "active"

"""Release lifecycle through nginx: deploy, redeploy, roll back, refuse bad artifacts, prune.

The steps build on each other and run in file order against the converged instance (1.0.0).
Releases (prepare.yml): 1.0.0-5.0.0 healthy, 6.0.0 never healthy. app_keep_releases is 2.
"""

from __future__ import annotations

import shutil

from conftest import http_get, run_playbook

ROOT = "/opt/sampleapp"


def serving(host) -> str:
    """The version nginx serves, after checking the host's current link agrees."""
    health = http_get("/health")
    assert health.status == 200, health.body
    version = health.json()["version"]
    assert http_get("/version").json()["version"] == version
    assert host.check_output("sampleapp-release current") == version
    return version


def releases(host) -> list[str]:
    return host.check_output("sampleapp-release list").split()


def host_artifacts(host) -> list[str]:
    return sorted(host.check_output(f"ls {ROOT}/artifacts").split())


def deploy(version: str, *args: str):
    return run_playbook("deploy.yml", "-e", f"app_version={version}", *args)


def test_01_deploy_v2(host):
    run = deploy("2.0.0")
    assert run.rc == 0, run.output[-3000:]
    assert serving(host) == "2.0.0"
    assert host.check_output("sampleapp-release previous") == "1.0.0"


def test_02_same_version_again_changes_nothing(host):
    run = deploy("2.0.0")
    assert run.rc == 0, run.output[-3000:]
    assert run.changed == 0, run.output[-3000:]


def test_03_check_mode_does_not_fail(host):
    before = releases(host)
    # A new version: the artifact is verified, the host steps that would change are skipped.
    run = deploy("3.0.0", "--check")
    assert run.rc == 0, run.output[-3000:]
    assert releases(host) == before
    assert serving(host) == "2.0.0"


def test_04_rollback_to_v1(host):
    run = run_playbook("rollback.yml")
    assert run.rc == 0, run.output[-3000:]
    assert serving(host) == "1.0.0"
    assert host.check_output("sampleapp-release previous") == "2.0.0"


def test_05_bad_checksum_fails_before_the_host_changes(host):
    before = (releases(host), host_artifacts(host))
    run = deploy("3.0.0", "-e", "app_artifact_sha256=" + "0" * 64)
    assert run.rc != 0
    assert "checksum mismatch" in run.output
    assert (releases(host), host_artifacts(host)) == before
    assert serving(host) == "1.0.0"


def test_06_tampered_artifact_fails_its_sidecar(host, dist, tmp_path):
    shutil.copy(dist / "sampleapp-3.0.0.tar.gz.sha256", tmp_path)
    tampered = tmp_path / "sampleapp-3.0.0.tar.gz"
    data = bytearray((dist / "sampleapp-3.0.0.tar.gz").read_bytes())
    data[len(data) // 2] ^= 0xFF
    tampered.write_bytes(bytes(data))
    before = (releases(host), host_artifacts(host))
    run = deploy("3.0.0", "-e", f"app_artifact_local_dir={tmp_path}")
    assert run.rc != 0
    assert "checksum mismatch" in run.output
    assert (releases(host), host_artifacts(host)) == before
    assert serving(host) == "1.0.0"


def test_07_missing_release_fails_cleanly(host):
    before = (releases(host), host_artifacts(host))
    run = deploy("9.9.9")
    assert run.rc != 0
    assert "sampleapp-9.9.9.tar.gz not found" in run.output
    assert (releases(host), host_artifacts(host)) == before
    assert serving(host) == "1.0.0"


def test_08_failed_health_gate_then_rollback(host):
    run = deploy("6.0.0")
    assert run.rc != 0
    assert "Health gate failed" in run.output
    # The role leaves the failed release active (documented); the caller rolls back.
    assert host.check_output("sampleapp-release current") == "6.0.0"
    assert http_get("/health").status == 503
    run = run_playbook("rollback.yml")
    assert run.rc == 0, run.output[-3000:]
    assert serving(host) == "1.0.0"


def test_09_named_rollback(host):
    run = run_playbook("rollback.yml", "-e", "app_rollback_version=2.0.0")
    assert run.rc == 0, run.output[-3000:]
    assert serving(host) == "2.0.0"


def test_10_releases_pruned_to_keep(host):
    for version in ("3.0.0", "4.0.0"):
        run = deploy(version)
        assert run.rc == 0, run.output[-3000:]
        assert serving(host) == version
    # keep 2: the two newest installs, which are also current and previous.
    assert releases(host) == ["3.0.0", "4.0.0"]
    assert host_artifacts(host) == ["sampleapp-3.0.0.tar.gz", "sampleapp-4.0.0.tar.gz"]
    assert sorted(host.check_output(f"ls {ROOT}/releases").split()) == ["3.0.0", "4.0.0"]

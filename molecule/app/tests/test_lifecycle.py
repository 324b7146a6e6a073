"""Release lifecycle through nginx: deploy, redeploy, roll back, refuse bad artifacts, prune;
then a deploy's separate steps (phases.yml): stage while serving, activate, unstage; and a
converge whose only change is the env file (one restart).

The steps build on each other and run in file order against the converged instance (1.0.0).
Releases (prepare.yml): 1.0.0-5.0.0 healthy, 6.0.0 never healthy. app_keep_releases is 2.
"""

from __future__ import annotations

import json
import re
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


# A deploy's steps, each a play of one run (phases.yml), with a config change staged alongside.
NEW_ENV = json.dumps({"app_env": {"SAMPLEAPP_GREETING": "Hello from the stage"}})


def phases(version: str, *steps: str, env: str | None = None):
    args = ["-e", f"app_version={version}", "-e", json.dumps({"app_phases": list(steps)})]
    return run_playbook("phases.yml", *args, *(["-e", env] if env else []))


def changed_tasks(output: str, play: str) -> list[str]:
    """The tasks of one play of a run's output that reported a change."""
    section = output.split(f"PLAY [{play}]", 1)[1].split("\nPLAY ", 1)[0]
    return [task.split("]", 1)[0] for task in section.split("TASK [")[1:] if re.search(r"^changed: ", task, re.MULTILINE)]


def main_pid(host) -> str:
    return host.check_output("systemctl show -p MainPID --value sampleapp")


def starts(host) -> int:
    """gunicorn starts the journal has seen (restarts included)."""
    return int(host.check_output("journalctl -u sampleapp -o cat --no-pager | grep -c 'Starting gunicorn' || true"))


def test_11_stage_leaves_the_running_release_alone(host):
    pid, started = main_pid(host), starts(host)
    env_file = host.file(f"{ROOT}/shared/sampleapp.env").content_string
    run = phases("5.0.0", "stage", env=NEW_ENV)
    assert run.rc == 0, run.output[-3000:]
    assert run.changed == 2, run.output[-3000:]  # the artifact copy and the install, nothing else
    status = json.loads(host.check_output("sampleapp-release status"))
    assert {key: status[key] for key in ("current", "previous", "installed")} == {
        "current": "4.0.0", "previous": "3.0.0", "installed": ["3.0.0", "4.0.0", "5.0.0"]}
    # Each release with the checksum of the artifact it came from (a rebuilt version is refused).
    assert list(status["artifacts"]) == status["installed"], status
    assert all(re.fullmatch(r"[0-9a-f]{64}", sha) for sha in status["artifacts"].values()), status
    assert serving(host) == "4.0.0"
    # The service was not touched, and the new env file waits for activate.
    assert (main_pid(host), starts(host)) == (pid, started)
    assert host.file(f"{ROOT}/shared/sampleapp.env").content_string == env_file
    assert http_get("/").body.decode() == "Hello from molecule 4.0.0\n"


def test_12_second_stage_changes_nothing_then_activate_restarts_once(host):
    started = starts(host)
    run = phases("5.0.0", "stage", "activate", env=NEW_ENV)
    assert run.rc == 0, run.output[-3000:]
    # Staging 5.0.0 again changes nothing; activate writes the staged env change and switches
    # (its one restart): no unit write, no reload, no extra restart.
    assert changed_tasks(run.output, "Stage the release while the host serves") == []
    assert changed_tasks(run.output, "Activate the staged release") == [
        "ec2fleet.fleet.app : Write the environment file (config and secrets)",
        "ec2fleet.fleet.app : Activate release 5.0.0",
    ]
    assert serving(host) == "5.0.0"
    assert host.check_output("sampleapp-release previous") == "4.0.0"
    assert http_get("/").body.decode() == "Hello from the stage 5.0.0\n"
    assert starts(host) == started + 1


def test_13_unstage_removes_what_the_stage_installed(host):
    before, pid = releases(host), main_pid(host)
    assert "2.0.0" not in before  # pruned by test_10
    run = phases("2.0.0", "stage", "unstage", env=NEW_ENV)
    assert run.rc == 0, run.output[-3000:]
    assert run.changed == 3, run.output[-3000:]  # artifact copy, install, remove
    assert releases(host) == before
    assert "sampleapp-2.0.0.tar.gz" not in host_artifacts(host)
    assert not host.file(f"{ROOT}/releases/2.0.0").exists
    assert serving(host) == "5.0.0"
    assert main_pid(host) == pid


def test_14_remove_refuses_current_and_previous(host):
    for version, role in (("5.0.0", "current"), ("4.0.0", "previous")):
        run = host.run(f"sampleapp-release remove {version}")
        assert run.rc == 6
        assert f"release {version} is {role}: refusing to remove it" in run.stderr
    assert releases(host) == ["3.0.0", "4.0.0", "5.0.0"]


def test_15_converge_with_only_a_config_change_restarts_once(host):
    """The role's main on the running version: the env file changed back, one restart applies it."""
    started = starts(host)
    run = deploy("5.0.0")  # app_env from the inventory again
    assert run.rc == 0, run.output[-3000:]
    assert changed_tasks(run.output, "Deploy the app") == [
        "ec2fleet.fleet.app : Write the environment file (config and secrets)",
        "ec2fleet.fleet.app : Restart the app for its new unit or environment",
        "ec2fleet.fleet.app : Prune releases beyond 2",  # 3.0.0: neither current nor previous
    ]
    assert releases(host) == ["4.0.0", "5.0.0"]
    assert http_get("/").body.decode() == "Hello from molecule 5.0.0\n"
    assert starts(host) == started + 1

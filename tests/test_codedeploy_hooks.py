"""The CodeDeploy revision's hooks install, start and validate the sample app in a container.

The CodeDeploy agent is not available here, so this test plays its part on the host side
exactly as the AppSpec guide describes it: unpack the bundle into
deployment-root/<group id>/<deployment id>/deployment-archive, run ApplicationStop from the
PREVIOUS revision (not on the first deployment), BeforeInstall, the Install copy of the `files`
section (+ `permissions`), AfterInstall, ApplicationStart and ValidateService, each with the
environment variables the agent sets, as its `runas` user, killed after its `timeout`. The hooks,
the `app` role, its release helper, the app and systemd are all real.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import uuid
import zipfile
from pathlib import Path

import pytest
import yaml
from doubles.harness import REPO, run_playbook, systemd_container

pytestmark = pytest.mark.docker
GROUP_ID = str(uuid.uuid4())
ENV = {"APPLICATION_NAME": "sampleapp", "DEPLOYMENT_GROUP_NAME": "web", "DEPLOYMENT_GROUP_ID": GROUP_ID}
APP_PLAYBOOK = """
- hosts: all
  gather_facts: true
  roles:
    - ec2fleet.fleet.app
"""


def build(version: str, dist: Path) -> Path:
    subprocess.run([sys.executable, str(REPO / "tools" / "build-release"), version, "--dist", str(dist)],
                   check=True, capture_output=True)
    out = subprocess.run([sys.executable, str(REPO / "codedeploy" / "build-bundle"), version, "--dist", str(dist)],
                         check=True, capture_output=True, text=True)
    return Path(out.stdout.strip())


def unpack(bundle: Path, target: Path) -> None:
    """Unzip keeping the Unix modes stored in the bundle, as the agent does."""
    with zipfile.ZipFile(bundle) as archive:
        for info in archive.infolist():
            path = target / info.filename
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(archive.read(info))
            mode = (info.external_attr >> 16) & 0o7777
            if mode:
                path.chmod(mode)


class FakeAgent:
    """Runs a revision through the EC2/On-Premises in-place lifecycle on one container."""

    def __init__(self, host, workdir: Path):
        self.host = host
        self.workdir = workdir
        self.last_archive: str | None = None  # last successful revision, for ApplicationStop
        self.ran: list[tuple[str, str, int]] = []

    def hook(self, archive: str, event: str, deployment_id: str) -> subprocess.CompletedProcess:
        spec = yaml.safe_load(self.host.exec("cat", f"{archive}/appspec.yml").stdout)
        result = subprocess.CompletedProcess([], 0, "", "")
        for script in spec.get("hooks", {}).get(event, []):
            env = dict(ENV, LIFECYCLE_EVENT=event, DEPLOYMENT_ID=deployment_id)
            command = ["docker", "exec", "-w", archive]
            for key, value in env.items():
                command += ["-e", f"{key}={value}"]
            runas = script.get("runas", "root")
            command += [self.host.name, "timeout", str(script.get("timeout", 3600)),
                        "runuser", "-u", runas, "--", f"{archive}/{script['location']}"]
            result = subprocess.run(command, capture_output=True, text=True)
            self.ran.append((deployment_id, event, result.returncode))
            if result.returncode != 0:
                return result
        return result

    def install_files(self, archive: str) -> None:
        spec = yaml.safe_load(self.host.exec("cat", f"{archive}/appspec.yml").stdout)
        for entry in spec.get("files", []):
            self.host.sh(f"mkdir -p {entry['destination']} && cp -a {archive}/{entry['source']}/. {entry['destination']}/")
        for perm in spec.get("permissions", []):
            find_type = {"file": "f", "directory": "d"}
            for kind in perm.get("type", ["file", "directory"]):
                found = f"find {perm['object']} -mindepth 1 -type {find_type[kind]}"
                if "owner" in perm:
                    self.host.sh(f"{found} -exec chown {perm['owner']} {{}} +")
                if "group" in perm:
                    self.host.sh(f"{found} -exec chgrp {perm['group']} {{}} +")
                if "mode" in perm:
                    self.host.sh(f"{found} -exec chmod {perm['mode']} {{}} +")

    def deploy(self, bundle: Path, tamper=None) -> tuple[bool, str]:
        deployment_id = "d-" + uuid.uuid4().hex[:9].upper()
        local = self.workdir / deployment_id
        unpack(bundle, local)
        if tamper:
            tamper(local)
        root = f"/opt/codedeploy-agent/deployment-root/{GROUP_ID}/{deployment_id}"
        self.host.exec("mkdir", "-p", root)
        subprocess.run(["docker", "cp", str(local), f"{self.host.name}:{root}/deployment-archive"], check=True)
        archive = f"{root}/deployment-archive"
        steps = []
        if self.last_archive:  # ApplicationStop runs the previous revision's scripts
            steps.append((self.last_archive, "ApplicationStop"))
        steps += [(archive, "BeforeInstall"), (archive, "Install"), (archive, "AfterInstall"),
                  (archive, "ApplicationStart"), (archive, "ValidateService")]
        for where, event in steps:
            if event == "Install":
                self.install_files(where)
                continue
            result = self.hook(where, event, deployment_id)
            if result.returncode != 0:
                return False, f"{event} failed ({result.returncode}): {result.stdout}{result.stderr}"
        self.last_archive = archive
        return True, deployment_id


@pytest.fixture(scope="module")
def world(tmp_path_factory, base_image):
    tmp = tmp_path_factory.mktemp("codedeploy-hooks")
    dist = tmp / "dist"
    bundles = {version: build(version, dist) for version in ("1.0.0", "1.1.0")}
    playbook = tmp / "app.yml"
    playbook.write_text(APP_PLAYBOOK)
    with systemd_container(base_image, "codedeploy-hooks-pytest") as host:
        inventory = host.inventory(tmp)

        def ansible_app(version: str):
            return run_playbook(playbook, inventory=inventory,
                                extra_vars={"app_version": version, "app_artifact_local_dir": str(dist),
                                            "app_controller_cache_dir": str(tmp / "cache")})

        # What site.yml does on a new web host: the app role without a release.
        prepared = ansible_app("")
        assert prepared.rc == 0, prepared.output[-4000:]
        yield {"host": host, "agent": FakeAgent(host, tmp / "archives"), "bundles": bundles, "ansible_app": ansible_app}


def helper(host, *args: str) -> str:
    return host.exec("/usr/local/sbin/sampleapp-release", *args).stdout.strip()


def health(host) -> dict:
    out = host.exec("python3", "-c", "import urllib.request;print(urllib.request.urlopen("
                    "'http://127.0.0.1:8000/health', timeout=5).read().decode())").stdout
    return json.loads(out)


def test_first_deployment_installs_starts_and_validates(world):
    host, agent = world["host"], world["agent"]
    ok, detail = agent.deploy(world["bundles"]["1.0.0"])
    assert ok, detail
    # First deployment to an instance: no ApplicationStop (no previous revision).
    assert [event for _, event, _ in agent.ran] == ["BeforeInstall", "AfterInstall", "ApplicationStart",
                                                    "ValidateService"]
    assert helper(host, "current") == "1.0.0"
    assert health(host)["version"] == "1.0.0"
    assert host.exec("systemctl", "is-active", "sampleapp").stdout.strip() == "active"
    assert host.exec("systemctl", "is-enabled", "sampleapp").stdout.strip() == "enabled"
    assert host.exec("test", "-f", "/opt/sampleapp/artifacts/sampleapp-1.0.0.tar.gz", check=False).returncode == 0


def test_second_deployment_runs_previous_stop_and_switches(world):
    host, agent = world["host"], world["agent"]
    agent.ran.clear()
    previous_archive = agent.last_archive
    ok, detail = agent.deploy(world["bundles"]["1.1.0"])
    assert ok, detail
    assert [event for _, event, _ in agent.ran] == ["ApplicationStop", "BeforeInstall", "AfterInstall",
                                                    "ApplicationStart", "ValidateService"]
    assert previous_archive and agent.last_archive != previous_archive
    assert helper(host, "current") == "1.1.0"
    assert helper(host, "previous") == "1.0.0"
    assert health(host)["version"] == "1.1.0"


def test_ansible_deployment_of_the_same_release_finds_nothing_to_change(world):
    # Same layout, same artifact, same symlinks, same service state: the app role has no work.
    run = world["ansible_app"]("1.1.0")
    assert run.rc == 0, run.output[-4000:]
    task, changed_tasks = "", []
    for line in run.output.splitlines():
        if line.startswith("TASK ["):
            task = line
        elif line.startswith("changed:"):
            changed_tasks.append(task)
    assert run.recap(world["host"].name)["changed"] == 0, changed_tasks or run.output[-4000:]


def test_failed_hook_fails_the_deployment_and_keeps_the_live_release(world):
    host, agent = world["host"], world["agent"]

    def corrupt_checksum(archive: Path):
        sidecar = archive / "release" / "sampleapp-1.0.0.tar.gz.sha256"
        sidecar.write_text("0" * 64 + "  sampleapp-1.0.0.tar.gz\n")

    # 1.0.0 is installed already, so a wrong checksum must be caught by the helper, not skipped.
    shutil.copy(world["bundles"]["1.0.0"], world["bundles"]["1.0.0"].with_suffix(".copy.zip"))
    ok, detail = agent.deploy(world["bundles"]["1.0.0"].with_suffix(".copy.zip"), tamper=corrupt_checksum)
    assert not ok
    assert detail.startswith("AfterInstall failed (5)"), detail
    assert helper(host, "current") == "1.1.0"
    assert health(host)["version"] == "1.1.0"


def test_hooks_refuse_to_run_outside_codedeploy(world):
    host, agent = world["host"], world["agent"]
    result = host.exec(f"{agent.last_archive}/hooks/after-install.sh", check=False)
    assert result.returncode != 0
    assert "LIFECYCLE_EVENT" in result.stderr

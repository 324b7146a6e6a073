"""End to end on the local fleet: up, site.yml, smoke tests, rolling deploys and their faults, down.

Runs with `tools/test e2e` (EC2FLEET_E2E=1); the default pytest run leaves it out. It uses a
fleet named `e2e` (its own emulator, networks and ports), so it runs beside the README's commands
and their `local` fleet (tests/e2e/test_0_readme_commands.py, another xdist worker), and refuses
to start when an `e2e` fleet is already up. The ops commands reach it through EC2FLEET_FLEET
(the fleet's environment). The tests run in file order and share one fleet; each builds on the
state the previous left.
"""

from __future__ import annotations

import functools
import itertools
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest
from ansible_collections.ec2fleet.fleet.plugins.module_utils import ssh_ca
from browser import DomCounter, chromium
from ssh_support import keygen

from ec2fleet import emulator
from ec2fleet.localfleet import containers, control
from ec2fleet.localfleet.load import Load
from ec2fleet.localfleet.world import FleetSpec, World, network_gateway, public_network
from ec2fleet.ops import plain

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
INVENTORY = "inventory/local.ec2_fleet.yml"
APP = "sampleapp"
FLEET = "e2e"
SIZE = 3
# A host's line in a playbook's recap: name, unreachable, failed.
RECAP = re.compile(r"^(\S+)\s+: ok=\d+\s+changed=\d+\s+unreachable=(\d+)\s+failed=(\d+)", re.M)

pytestmark = [pytest.mark.docker, pytest.mark.e2e]


# -- helpers ---------------------------------------------------------------------------------
def env_of(state) -> dict:
    return {**os.environ, **state.env(), "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"), "ANSIBLE_FORCE_COLOR": "0",
            "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}"}


def playbook(state, name: str, *extra: str, timeout: int = 1500, env: dict | None = None,
             inventory: str = INVENTORY) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(VENV_BIN / "ansible-playbook"), "-i", inventory, f"playbooks/{name}", *extra],
                          cwd=REPO, env={**env_of(state), **(env or {})}, capture_output=True, text=True, timeout=timeout)
    keep_log(name, proc.stdout + proc.stderr)
    return proc


def deploy_in_background(state, *extra: str, env: dict | None = None) -> subprocess.Popen:
    """`deploy.yml` with `extra` arguments, running while the test acts; its output (stdout and
    stderr) is read with communicate()."""
    return subprocess.Popen([str(VENV_BIN / "ansible-playbook"), "-i", INVENTORY, "playbooks/deploy.yml", *extra],
                            cwd=REPO, env={**env_of(state), **(env or {})}, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def fab(state, *args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    """An ops task (`tools/fleet <task>`, i.e. Fabric) against the fleet."""
    return subprocess.run([str(VENV_BIN / "fab"), *args], cwd=REPO, env=env_of(state), capture_output=True, text=True,
                          timeout=timeout)


def strict_ssh(known_hosts: Path, key: Path, *options: str) -> list[str]:
    """An OpenSSH client that checks host certificates against `known_hosts` only and offers
    only `key` (and what `options` add, a CertificateFile say)."""
    return ["ssh", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes", "-o", "IdentitiesOnly=yes",
            "-o", "IdentityAgent=none", "-o", f"UserKnownHostsFile={known_hosts}", "-i", str(key), *options]


def at_bastion(state) -> list[str]:
    """ssh's destination for the bastion: its public address (its Elastic IP in the emulator, a
    principal of its host certificate)."""
    return [f"admin@{state.data['bastion_public_ip']}"]


def keep_log(name: str, text: str) -> None:
    """A run's output under reports/e2e/ (CI keeps reports/)."""
    log = REPO / "reports" / "e2e"
    log.mkdir(parents=True, exist_ok=True)
    (log / f"{name}-{int(time.time())}.log").write_text(text)


def under_load(state, page: bool = False) -> Load:
    """Requests through the balancer for as long as the `with` block lasts (each test asserts
    that none failed wherever the deploy promises zero downtime): about 30 a second, enough to
    hit a target that is sent traffic while out of service (the drain is 5 s), and not so many
    that the load takes the 2 cores from the deploy (unthrottled, 3 workers made the e2e stage
    38 min instead of 27). To `/version`, or with `page` to the app's `/` page ("<greeting>
    <version>"), the one a faulty release fails."""
    if page:
        return Load(f"http://127.0.0.1:{state.data['lb_port']}/", workers=3, pause=0.1,
                    version_of=lambda body: body.decode().split()[-1])
    return Load(f"http://127.0.0.1:{state.data['lb_port']}/version", workers=3, pause=0.1)


def fresh_controller(tmp_path: Path) -> dict:
    """What a new controller has (a CI runner, an AWX job): an empty fact cache."""
    cache = tmp_path / "facts"
    cache.mkdir()
    return {"ANSIBLE_CACHE_PLUGIN_CONNECTION": str(cache)}


def web_instances(state) -> list[dict]:
    group = state.clients("autoscaling").describe_auto_scaling_groups(AutoScalingGroupNames=["web"])
    return group["AutoScalingGroups"][0]["Instances"]


def on_host(state, iid: str, *cmd: str, check: bool = True) -> str:
    return containers.docker("exec", containers.container_name(state.name, iid), *cmd, check=check).strip()


def versions(state) -> dict[str, str]:
    return {i["InstanceId"]: on_host(state, i["InstanceId"], f"/usr/local/sbin/{APP}-release", "current", check=False)
            for i in web_instances(state)}


def lb_version(state) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{state.data['lb_port']}/version", timeout=5) as resp:
        return json.loads(resp.read())["version"]


def _names_by_instance(state) -> dict[str, str]:
    """inventory hostname -> instance id, as the report names hosts."""
    out = subprocess.run([str(VENV_BIN / "ansible-inventory"), "-i", INVENTORY, "--list"], cwd=REPO,
                         env=env_of(state), capture_output=True, text=True, timeout=300, check=True).stdout
    hostvars = plain(json.loads(out))["_meta"]["hostvars"]
    return {name: hv.get("ec2_instance_id") for name, hv in hostvars.items()}


def wait_for_canary(state, proc, timeout: float = 600) -> str:
    """The instance id of the first host the running deploy `proc` put in Standby."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        canary = next((i["InstanceId"] for i in web_instances(state) if i["LifecycleState"] == "Standby"), None)
        if canary:
            return canary
        if proc.poll() is not None:
            out = proc.stdout.read() if proc.stdout else ""
            keep_log("deploy-ended-before-standby", out)
            pytest.fail(f"the deploy ended (exit {proc.returncode}) before the canary entered Standby:\n{out[-4000:]}")
        time.sleep(0.3)
    pytest.fail("no canary entered Standby")


def registered_anywhere(state, iid: str) -> bool:
    """Whether any target group still has the instance (registered, or draining)."""
    elb = state.clients("elbv2")
    return any(d["Target"]["Id"] == iid
               for tg in elb.describe_target_groups()["TargetGroups"]
               for d in elb.describe_target_health(TargetGroupArn=tg["TargetGroupArn"])["TargetHealthDescriptions"])


def recorded_release(state) -> str | None:
    """The release new instances bootstrap (the deploy's release record); none before the first deploy."""
    try:
        return state.clients("ssm").get_parameter(Name=f"/{APP}/local/release")["Parameter"]["Value"]
    except state.clients("ssm").exceptions.ParameterNotFound:
        return None


def lock_value(state):
    try:
        value = state.clients("ssm").get_parameter(Name=f"/{APP}/local/deploy-lock")["Parameter"]["Value"]
    except state.clients("ssm").exceptions.ParameterNotFound:
        return None
    return json.loads(value) if value else None


def assert_fleet_at_rest(state):
    """Nothing in Standby, no suspended process, no lock: what every deploy must leave."""
    states = {i["InstanceId"]: i["LifecycleState"] for i in web_instances(state)}
    assert set(states.values()) == {"InService"}, states
    group = state.clients("autoscaling").describe_auto_scaling_groups(AutoScalingGroupNames=["web"])
    assert group["AutoScalingGroups"][0]["SuspendedProcesses"] == []
    assert lock_value(state) is None


def report_path(output: str) -> Path:
    """The report of the run that printed `output` (its summary names the file), never an older one."""
    found = re.findall(r"report: (\S+\.json)", output)
    assert found, f"the deploy printed no report path:\n{output[-3000:]}"
    return Path(found[-1])


def report_of(output: str) -> dict:
    return json.loads(report_path(output).read_text())


def check_html_report(output: str, tmp_path: Path) -> None:
    """The HTML page beside the JSON report, rendered by headless Chromium as an operator opens
    it: one row per host, the batches, the result; a screenshot is kept under reports/e2e/."""
    path = report_path(output)
    report = json.loads(path.read_text())
    page = path.with_suffix(".html")
    assert page.exists(), f"no HTML report beside {path.name}"
    dom, _ = chromium(tmp_path, "--dump-dom", page.as_uri())
    found = DomCounter()
    found.feed(dom)
    assert found.result == report["result"].upper()
    assert [host for host, _ in found.rows] == [h["host"] for b in report["batches"] for h in b["hosts"]]
    assert [state for _, state in found.batches] == [b["state"] for b in report["batches"]]
    shots = REPO / "reports" / "e2e"
    shots.mkdir(parents=True, exist_ok=True)
    chromium(tmp_path, f"--screenshot={shots / (page.stem + '.png')}", "--window-size=1400,1000", page.as_uri())
    assert (shots / (page.stem + ".png")).stat().st_size > 10_000


def add_fault(state, iid: str, version: str) -> None:
    """A host-specific fault: the app's unit refuses to start while `version` is current."""
    on_host(state, iid, "sh", "-c",
            "mkdir -p /etc/systemd/system/sampleapp.service.d && printf '%s\\n' '[Service]' "
            f"\"ExecStartPre=/bin/sh -c '! readlink /opt/{APP}/current | grep -q /{version}$'\" "
            "> /etc/systemd/system/sampleapp.service.d/zz-e2e-fault.conf && systemctl daemon-reload")


def clear_faults(state) -> None:
    for inst in web_instances(state):
        on_host(state, inst["InstanceId"], "sh", "-c",
                "rm -f /etc/systemd/system/sampleapp.service.d/zz-e2e-fault.conf && systemctl daemon-reload")


# -- the fleet -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def fleet():
    if control.exists(FLEET):
        pytest.fail(f"a fleet {FLEET} is already up: `EC2FLEET_FLEET={FLEET} tools/fleet down` first")
    for version in ("1.0.0", "2.0.0", "3.0.0", "4.0.0", "5.0.0"):
        subprocess.run([str(REPO / "tools" / "build-release"), version], cwd=REPO, check=True, capture_output=True)
    try:
        state = control.up(size=SIZE, name=FLEET)
        yield state
    finally:
        control.down(FLEET)


def test_up_and_site_converge(fleet):
    proc = playbook(fleet, "site.yml")
    assert proc.returncode == 0, proc.stdout[-3000:]
    fleet.set_flag("converged")
    assert lb_version(fleet) == "1.0.0"
    assert set(versions(fleet).values()) == {"1.0.0"}


def test_missing_release_fails_in_preflight_and_touches_nothing(fleet):
    before = versions(fleet)
    proc = playbook(fleet, "deploy.yml", "-e", "app_version=9.9.9")
    assert proc.returncode != 0
    assert "9.9.9" in proc.stdout
    assert versions(fleet) == before
    assert_fleet_at_rest(fleet)


def test_second_deploy_is_refused_by_the_lock(fleet):
    # Another operator's live deploy holds the lock (a live PID on this controller).
    holder = subprocess.Popen(["sleep", "300"])
    try:
        take = subprocess.run(
            [str(VENV_BIN / "ansible"), "localhost", "-m", "ec2fleet.fleet.deploy_lock", "-a",
             f"app={APP} env=local version=7.7.7 owner=alice@ops pid={holder.pid}"],
            cwd=REPO, env=env_of(fleet), capture_output=True, text=True, timeout=120)
        assert take.returncode == 0, take.stdout
        proc = playbook(fleet, "deploy.yml", "-e", "app_version=2.0.0")
        assert proc.returncode != 0
        assert "alice@ops" in proc.stdout and "7.7.7" in proc.stdout
        assert set(versions(fleet).values()) == {"1.0.0"}
    finally:
        holder.kill()
        subprocess.run([str(VENV_BIN / "ansible"), "localhost", "-m", "ec2fleet.fleet.deploy_lock", "-a",
                        f"app={APP} env=local state=released force=true"],
                       cwd=REPO, env=env_of(fleet), capture_output=True, text=True, timeout=120)
    assert lock_value(fleet) is None


def test_rolling_deploy_succeeds_and_records_the_release(fleet, tmp_path):
    """From a fresh controller (empty fact cache), under load: staged, then switched batch by batch."""
    with under_load(fleet) as load:
        proc = playbook(fleet, "deploy.yml", "-e", "app_version=2.0.0", env=fresh_controller(tmp_path))
    assert proc.returncode == 0, proc.stdout[-4000:]
    assert load.failed == 0, load.summary()
    assert load.versions().keys() == {"1.0.0", "2.0.0"}, load.summary()
    assert set(versions(fleet).values()) == {"2.0.0"}
    assert lb_version(fleet) == "2.0.0"
    assert_fleet_at_rest(fleet)
    report = report_of(proc.stdout)
    assert report["result"] == "succeeded"
    assert next(len(b["hosts"]) for b in report["batches"]) == 1  # the canary
    assert recorded_release(fleet) == "2.0.0"
    check_html_report(proc.stdout, tmp_path)
    # The deploy_progress callback's lines, one set per batch, in the playbook's output.
    batches = len(report["batches"])
    for n in range(1, batches + 1):
        assert re.search(rf"^deploy: batch {n} of {batches}: \d+ host\(s\) ", proc.stdout, re.M), proc.stdout[-3000:]
        assert re.search(rf"^deploy: batch {n} of {batches} deployed in \d+:\d\d \| ", proc.stdout, re.M)


def test_rollback_returns_to_the_last_good_release_with_no_artifact_on_the_controller(fleet, tmp_path):
    """rollback.yml after a finished deploy: the release before (1.0.0), still installed on every
    host, so the controller needs no artifact for it (moved away here) and nothing is installed;
    from a fresh controller, under load."""
    hidden = tmp_path / "hidden"
    hidden.mkdir()
    artifacts = sorted((REPO / "dist").glob(f"{APP}-1.0.0.tar.gz*"))
    assert artifacts, "the 1.0.0 artifact should be in dist/"
    for path in artifacts:
        shutil.move(str(path), hidden / path.name)
    try:
        with under_load(fleet) as load:
            proc = playbook(fleet, "rollback.yml", env=fresh_controller(tmp_path))
    finally:
        for path in hidden.iterdir():
            shutil.move(str(path), REPO / "dist" / path.name)
    assert proc.returncode == 0, proc.stdout[-4000:]
    assert "Rolling back role_web to 1.0.0" in proc.stdout
    assert load.failed == 0, load.summary()
    assert set(versions(fleet).values()) == {"1.0.0"}
    assert lb_version(fleet) == "1.0.0"
    report = report_of(proc.stdout)
    assert report["result"] == "succeeded" and report["version"] == "1.0.0"
    assert recorded_release(fleet) == "1.0.0"
    assert_fleet_at_rest(fleet)


def test_a_checksum_mismatch_on_one_host_stops_the_deploy_before_any_host_leaves_service(fleet):
    """Staging fails on one host: it holds a release 3.0.0 installed from another artifact (a
    version rebuilt and republished, a hand install), which no deploy may switch to. The deploy
    stops before any host leaves service and names the host and both checksums; the other hosts
    lose what the staging installed, that host keeps what it had, every host runs the release it
    ran. No request fails, the lock is released, the release record is unchanged."""
    before, record_before = versions(fleet), recorded_release(fleet)
    hosts = sorted(before)
    odd = hosts[-1]
    # Release 3.0.0 on `odd`, as the helper records one: its marker names the artifact it came from
    # (here the running release's, not 3.0.0's).
    marker = f"/opt/{APP}/releases/3.0.0/.installed.json"
    on_host(fleet, odd, "python3", "-c",
            "import json, pathlib, time\n"
            f"current = pathlib.Path('/opt/{APP}/current').resolve() / '.installed.json'\n"
            "meta = dict(json.loads(current.read_text()), version='3.0.0', installed_at=time.time())\n"
            f"pathlib.Path('{marker}').parent.mkdir()\n"
            f"pathlib.Path('{marker}').write_text(json.dumps(meta))\n")
    foreign = json.loads(on_host(fleet, odd, "cat", marker))["artifact_sha256"]
    expected = (REPO / "dist" / f"{APP}-3.0.0.tar.gz.sha256").read_text().split()[0]
    try:
        with under_load(fleet) as load:
            proc = playbook(fleet, "deploy.yml", "-e", "app_version=3.0.0")
        assert proc.returncode != 0, proc.stdout[-4000:]
        reason = re.search(r"staging 3\.0\.0 failed on 1 host\(s\), no host left service: (\S+): (.*)", proc.stdout)
        assert reason and reason[1].endswith(odd), proc.stdout[-4000:]
        assert "installed from another artifact" in reason[2] and foreign in reason[2] and expected in reason[2], reason[2]
        report = report_of(proc.stdout)
        assert all(b["state"] == "not_started" for b in report["batches"]), report["batches"]
        assert load.failed == 0, load.summary()
        assert load.versions().keys() == set(before.values()), load.summary()
        assert versions(fleet) == before
        left = {iid: on_host(fleet, iid, f"/usr/local/sbin/{APP}-release", "list").split() for iid in hosts}
        assert {iid for iid, found in left.items() if "3.0.0" in found} == {odd}, left
        assert json.loads(on_host(fleet, odd, "cat", marker))["artifact_sha256"] == foreign
        assert recorded_release(fleet) == record_before
        assert_fleet_at_rest(fleet)
    finally:
        on_host(fleet, odd, "rm", "-rf", f"/opt/{APP}/releases/3.0.0")


def test_canary_failing_its_health_check_is_rolled_back_alone(fleet, tmp_path):
    for inst in web_instances(fleet):
        add_fault(fleet, inst["InstanceId"], "3.0.0")
    try:
        with under_load(fleet) as load:
            proc = playbook(fleet, "deploy.yml", "-e", "app_version=3.0.0")
    finally:
        clear_faults(fleet)
    assert load.failed == 0, load.summary()
    assert proc.returncode != 0
    report = report_of(proc.stdout)
    assert report["result"] == "failed"
    assert report["batches"][0]["state"] == "rolled_back"
    assert all(b["state"] == "not_started" for b in report["batches"][1:])
    check_html_report(proc.stdout, tmp_path)
    assert set(versions(fleet).values()) == {"1.0.0"}
    assert_fleet_at_rest(fleet)
    # Nothing of the failed release is left where it never ran (the staging is undone).
    staged = {i["InstanceId"]: on_host(fleet, i["InstanceId"], f"/usr/local/sbin/{APP}-release", "list").split()
              for i in web_instances(fleet)}
    canary = report["batches"][0]["hosts"][0]["instance_id"]
    assert all("3.0.0" not in found for iid, found in staged.items() if iid != canary), staged


def test_killed_mid_batch_then_rerun_completes(fleet):
    with under_load(fleet) as load:
        _killed_mid_batch_then_rerun(fleet)
    assert load.failed == 0, load.summary()
    assert_fleet_at_rest(fleet)


def _killed_mid_batch_then_rerun(fleet):
    proc = subprocess.Popen([str(VENV_BIN / "ansible-playbook"), "-i", INVENTORY, "playbooks/deploy.yml",
                             "-e", "app_version=3.0.0"], cwd=REPO, env=env_of(fleet),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 600
    try:
        while time.monotonic() < deadline:
            if any(i["LifecycleState"] == "Standby" for i in web_instances(fleet)):
                break
            assert proc.poll() is None, "the deploy ended before any host entered Standby"
            time.sleep(0.5)
        else:
            pytest.fail("no host entered Standby")
        time.sleep(3)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert lock_value(fleet) is not None, "the killed run should have left its lock"
    rerun = playbook(fleet, "deploy.yml", "-e", "app_version=3.0.0")
    assert rerun.returncode == 0, rerun.stdout[-4000:]
    assert "interrupted run" in rerun.stdout
    assert set(versions(fleet).values()) == {"3.0.0"}
    assert_fleet_at_rest(fleet)


def test_failure_in_second_batch_keeps_first_and_rolls_back_only_the_failed_batch(fleet):
    # Batches of one: canary, then two more. Once the canary is in Standby (so it is known), every
    # other host gets a fault for 4.0.0: the second batch fails, the third must not start.
    proc = deploy_in_background(fleet, "-e", "app_version=4.0.0", "-e", "deploy_batch_size=1")
    canary = None
    try:
        with under_load(fleet) as load:
            canary = wait_for_canary(fleet, proc)
            for inst in web_instances(fleet):
                if inst["InstanceId"] != canary:
                    add_fault(fleet, inst["InstanceId"], "4.0.0")
            out, _ = proc.communicate(timeout=1500)
    finally:
        if proc.poll() is None:
            proc.kill()
        clear_faults(fleet)
    assert load.failed == 0, load.summary()
    assert proc.returncode != 0, out[-3000:]
    report = report_of(out)
    assert report["result"] == "failed"
    assert [b["state"] for b in report["batches"]] == ["deployed", "rolled_back", "not_started"], report["batches"]
    assert [h["host"] for h in report["batches"][0]["hosts"]] == [
        h for h, v in _names_by_instance(fleet).items() if v == canary]
    after = versions(fleet)
    assert after.pop(canary) == "4.0.0"
    assert set(after.values()) == {"3.0.0"}, after
    assert_fleet_at_rest(fleet)


def test_instance_launched_later_converges_to_the_recorded_release(fleet):
    asg = fleet.clients("autoscaling")
    before = {i["InstanceId"] for i in web_instances(fleet)}
    asg.set_desired_capacity(AutoScalingGroupName="web", DesiredCapacity=len(before) + 1)
    deadline = time.monotonic() + 900
    new = None
    while time.monotonic() < deadline:
        new = next(iter({i["InstanceId"] for i in web_instances(fleet)} - before), None)
        if new and on_host(fleet, new, f"/usr/local/sbin/{APP}-release", "current", check=False) == "3.0.0":
            break
        time.sleep(5)
    else:
        log = fleet.dir / "callbacks" / f"{new}.log"
        pytest.fail(f"new instance {new} did not converge to 3.0.0; callback log:\n"
                    f"{log.read_text()[-3000:] if new and log.exists() else '(none)'}")



def test_instance_replaced_at_a_reused_address_is_reached_strictly_and_known_hosts_stays_as_it_was(fleet):
    """An instance replaced at the private address of one that is gone (AWS hands a freed
    address out again) has new host keys. With trust on first use its first contact fails
    ("REMOTE HOST IDENTIFICATION HAS CHANGED") until someone deletes a known_hosts line; with the
    fleet's host CA its new key comes with a certificate, so the provisioning callback's site.yml
    and a later run reach it with strict checking, and known_hosts is never written."""
    world = World(fleet.clients, FleetSpec(name=fleet.name))
    known_hosts = fleet.known_hosts_path
    trusted = known_hosts.read_text()
    assert trusted and all(line.startswith(("@cert-authority ", "#")) for line in trusted.splitlines() if line)
    old = next(i["InstanceId"] for i in web_instances(fleet) if i["LifecycleState"] == "InService")
    gone = fleet.clients("ec2").describe_instances(InstanceIds=[old])["Reservations"][0]["Instances"][0]
    old_key = on_host(fleet, old, "cat", "/etc/ssh/ssh_host_ed25519_key.pub")
    release = recorded_release(fleet)  # what a new instance bootstraps (the fleet may be mixed)
    fleet.clients("autoscaling").terminate_instance_in_auto_scaling_group(InstanceId=old,
                                                                       ShouldDecrementDesiredCapacity=True)
    deadline = time.monotonic() + 300  # the address is free once the drained container is gone
    while time.monotonic() < deadline and old in containers.list_fleet(fleet.name):
        time.sleep(2)
    assert old not in containers.list_fleet(fleet.name)
    new = world.launch("web", gone["SubnetId"], private_ip=gone["PrivateIpAddress"])
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and new not in containers.list_fleet(fleet.name):
        time.sleep(2)
    control.wait_callbacks(fleet, timeout=900)  # fleetd's site.yml for the new instance
    callback = fleet.dir / "callbacks" / f"{new}.log"
    log = callback.read_text() if callback.exists() else "(no callback log)"
    assert on_host(fleet, new, f"/usr/local/sbin/{APP}-release", "current", check=False) == release, log[-3000:]
    new_key = on_host(fleet, new, "cat", "/etc/ssh/ssh_host_ed25519_key.pub")
    assert new_key != old_key
    # The callback's converge met the new key at the old address under strict checking.
    assert "IDENTIFICATION HAS CHANGED" not in log and "Permanently added" not in log
    assert re.search(r"unreachable=0\s+failed=0", log), log[-3000:]
    again = subprocess.run([str(VENV_BIN / "ansible"), "-i", INVENTORY, f"*{new}", "-m", "ansible.builtin.command",
                            "-a", "cat /etc/ssh/ssh_host_ed25519_key.pub"],
                           cwd=REPO, env=env_of(fleet), capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert new_key.split()[1] in again.stdout
    assert "IDENTIFICATION HAS CHANGED" not in again.stderr and "Permanently added" not in again.stderr
    assert known_hosts.read_text() == trusted


def test_an_operator_certificate_opens_the_bastion_and_the_hop_an_expired_one_does_not(fleet, tmp_path):
    """A key in no authorized_keys file, signed for an hour by `tools/fleet sign-key` (the fleet's
    user CA, the principals the operators' policy grants), logs in to the bastion and, through
    it, to a web host; the same key without its certificate, or with a certificate that expired,
    is refused. Every hop checks host certificates strictly against known_hosts' CA line."""
    key = tmp_path / "operator"
    keygen(key)
    signed = fab(fleet, "sign-key", "--key", f"{key}.pub", "--hours", "1")
    assert signed.returncode == 0, signed.stdout + signed.stderr
    cert = tmp_path / "operator-cert.pub"
    assert cert.exists(), signed.stdout
    expired = tmp_path / "expired-cert.pub"
    expired.write_text(ssh_ca.sign(str(fleet.ssh_ca_dir / "user_ca"), Path(f"{key}.pub").read_text(), cert_type="user",
                                   principals=["admin"], key_id="expired", serial=7, valid_for=600,
                                   now=time.time() - 7200) + "\n")

    # ssh also offers the certificate it finds beside a key (<key>-cert.pub): the refused cases
    # use a copy of the key that has none.
    bare = tmp_path / "bare" / "operator"
    bare.parent.mkdir()
    shutil.copy(key, bare)

    def ssh(certificate, *args):
        base = strict_ssh(fleet.known_hosts_path, key if certificate == cert else bare,
                          *(["-o", f"CertificateFile={certificate}"] if certificate else []))
        hop = " ".join([*base, "-W", "%h:%p", *at_bastion(fleet)])
        return subprocess.run([*base, *[a.replace("@HOP@", hop) for a in args]], capture_output=True, text=True,
                              timeout=60)

    bastion = [*at_bastion(fleet), "id -un"]
    web = next(i["InstanceId"] for i in web_instances(fleet) if i["LifecycleState"] == "InService")
    address = fleet.clients("ec2").describe_instances(InstanceIds=[web])["Reservations"][0]["Instances"][0][
        "PrivateIpAddress"]
    through = ["-o", "ProxyCommand=@HOP@", f"admin@{address}", "cat /etc/hostname"]
    result = ssh(cert, *bastion)
    assert (result.returncode, result.stdout.strip()) == (0, "admin"), result.stderr
    result = ssh(cert, *through)
    assert result.returncode == 0 and result.stdout.strip() == "ip-" + address.replace(".", "-"), result.stderr
    # Refused logins count towards the bastion's fail2ban; the controller's address is in its
    # ignore list (inventory/group_vars/env_local.yml), so they ban no one here.
    for refused in (None, expired):
        result = ssh(refused, *bastion)
        assert result.returncode == 255 and "Permission denied" in result.stderr, (refused, result.stderr)
    ignored = on_host(fleet, fleet.data["bastion_instance_id"], "fail2ban-client", "get", "sshd", "ignoreip")
    assert network_gateway(fleet.name) in ignored and public_network(fleet.name).gateway in ignored, ignored


def test_host_ca_rotation_with_an_overlap_loses_no_access(fleet, tmp_path):
    """roles/common/README.md's host CA rotation, on the whole fleet: trust the old and the new CA
    (`tools/fleet known-hosts` with both), converge with the new CA (every host, the bastion too,
    is signed again), then trust the new CA alone. Every host answers at each step, over new
    connections; a client that still trusts only the old CA is refused by the re-signed hosts."""
    ca_dir = fleet.ssh_ca_dir
    old_pub = tmp_path / "host_ca_old.pub"
    shutil.copy(ca_dir / "host_ca.pub", old_pub)
    new = tmp_path / "host_ca_new"
    keygen(new)

    def trust(*cas: Path) -> None:
        args = [a for ca in cas for a in ("--ca-public-key", str(ca))]
        # The ranges from the inventory, as for production: the VPC's, and the hosts' public
        # addresses (the bastion's Elastic IP).
        done = fab(fleet, "known-hosts", *args)
        assert done.returncode == 0, done.stdout + done.stderr

    def every_host_answers(step: str) -> None:
        fresh = tmp_path / f"cp-{step}"  # new connections: a kept master would skip the host key check
        fresh.mkdir()
        ping = subprocess.run([str(VENV_BIN / "ansible"), "-i", INVENTORY, "all", "-m", "ansible.builtin.ping"],
                              cwd=REPO, env={**env_of(fleet), "ANSIBLE_SSH_CONTROL_PATH_DIR": str(fresh)},
                              capture_output=True, text=True, timeout=300)
        assert ping.returncode == 0, f"{step}:\n{ping.stdout[-3000:]}{ping.stderr[-2000:]}"

    trust(old_pub, Path(f"{new}.pub"))
    every_host_answers("overlap")
    # The local fleet's CA is the file its inventory names: the new CA takes its place.
    for suffix in ("", ".pub"):
        shutil.copy(f"{new}{suffix}", ca_dir / f"host_ca{suffix}")
    converge = playbook(fleet, "site.yml")
    assert converge.returncode == 0, converge.stdout[-4000:]
    for iid in [fleet.data["bastion_instance_id"], *(i["InstanceId"] for i in web_instances(fleet))]:
        cert = ssh_ca.parse_certificate(on_host(fleet, iid, "cat", "/etc/ssh/ssh_host_ed25519_key-cert.pub"))
        assert ssh_ca.same_key(cert["signing_ca"], Path(f"{new}.pub").read_text()), f"{iid} is not signed by the new CA"
    trust(Path(f"{new}.pub"))
    every_host_answers("new-ca-alone")
    stale = tmp_path / "known_hosts_old_ca_only"
    stale.write_text(f"@cert-authority {fleet.data['bastion_public_ip']},i-* {old_pub.read_text().strip()}\n")
    refused = subprocess.run([*strict_ssh(stale, fleet.key_path), *at_bastion(fleet), "true"],
                             capture_output=True, text=True, timeout=60)
    assert refused.returncode == 255 and "Host key verification failed" in refused.stderr, refused.stderr

def test_canary_that_stops_answering_fails_the_deploy_and_cleanup_still_runs(fleet):
    """The canary freezes (docker pause) once it is in Standby: the deploy counts it as failed
    (unreachable), stops, resumes the ASG processes, writes a report with the canary's state,
    keeps the lock with the canary on record (it is still in Standby) and exits non-zero. Once the
    host answers again, the next deploy takes the lock over and finishes the job."""
    # Shorter SSH keepalives and retries than ansible.cfg's, so a frozen host is given up on in
    # seconds instead of minutes (what is tested is what happens then, not how long SSH waits).
    # They apply to every host from the start. In one CI run the deploy ended with exit 4 (a host
    # unreachable) before the canary left service; its output was not kept (it is now). A 10 s
    # connect timeout on a loaded machine is the likely cause, so new connections get 30 s; the
    # frozen canary's established connection is still dropped by the keepalives in about 6 s.
    quick = {"ANSIBLE_SSH_ARGS": "-o ControlMaster=auto -o ControlPersist=300s -o ServerAliveInterval=3 "
                                 "-o ServerAliveCountMax=2 -o StrictHostKeyChecking=yes",
             "ANSIBLE_SSH_RETRIES": "1", "ANSIBLE_TIMEOUT": "30"}
    proc = deploy_in_background(fleet, "-e", "app_version=5.0.0", "-e", "deploy_batch_size=1", env=quick)
    canary = None
    try:
        with under_load(fleet) as load:
            canary = wait_for_canary(fleet, proc)
            # Frozen once drained: requests in flight to a host that freezes fail anywhere; what
            # is tested is that none is sent to it, and what the deploy does next.
            deadline = time.monotonic() + 600
            while registered_anywhere(fleet, canary):
                assert proc.poll() is None and time.monotonic() < deadline, "the canary was never drained"
                time.sleep(0.2)
            containers.docker("pause", containers.container_name(fleet.name, canary))
            out, _ = proc.communicate(timeout=900)
    finally:
        if proc.poll() is None:
            proc.kill()
        if canary:
            containers.docker("unpause", containers.container_name(fleet.name, canary), check=False)
    assert load.failed == 0, load.summary()
    keep_log("deploy-frozen-canary", out)
    assert proc.returncode != 0, out[-3000:]
    report = report_of(out)
    assert report["result"] == "failed"
    assert report["batches"][0]["state"] == "unreachable", report["batches"]
    assert all(b["state"] == "not_started" for b in report["batches"][1:])
    host = report["batches"][0]["hosts"][0]
    assert host["status"] == "unreachable" and host["instance_id"] == canary and host["out_of_service"]
    assert report["left_out_of_service"] == [canary]
    # Cleanup ran: processes resumed; the lock kept, with the canary on record, and said so.
    group = fleet.clients("autoscaling").describe_auto_scaling_groups(AutoScalingGroupNames=["web"])
    assert group["AutoScalingGroups"][0]["SuspendedProcesses"] == []
    lock = lock_value(fleet)
    assert lock is not None and lock["data"]["standby"] == [canary], lock
    assert "The deploy lock is kept" in out
    assert {i["InstanceId"]: i["LifecycleState"] for i in web_instances(fleet)}[canary] == "Standby"

    # The host answers again: an operator recovers the run by naming it, as from any controller.
    recover = playbook(fleet, "deploy-recover.yml", "-e", f"deploy_recover_run={lock['run_id']}")
    assert recover.returncode == 0, recover.stdout[-4000:]
    assert_fleet_at_rest(fleet)

    rerun = playbook(fleet, "deploy.yml", "-e", "app_version=5.0.0")
    assert rerun.returncode == 0, rerun.stdout[-4000:]
    assert set(versions(fleet).values()) == {"5.0.0"}
    assert_fleet_at_rest(fleet)


def group_sizes(state, name: str) -> tuple[int, int, int]:
    group = state.clients("autoscaling").describe_auto_scaling_groups(AutoScalingGroupNames=[name])["AutoScalingGroups"][0]
    return group["MinSize"], group["DesiredCapacity"], group["MaxSize"]


def test_fixed_size_groups_deploy_each_within_its_policy_and_get_their_sizes_back(fleet):
    """MinSize == DesiredCapacity, common in production: EnterStandby may not lower the desired
    capacity below MinSize. With a second fixed-size group (api, 2 instances) beside web (made
    fixed too), behind the same target group, the deploy lowers each group's MinSize for the
    rollout (capacity auto, min healthy 50%), never takes more of a group out at once than its
    policy allows, and puts both groups' sizes back. Under capacity=none the same plan is refused
    in one line before anything changes."""
    asg = fleet.clients("autoscaling")
    size = len(web_instances(fleet))
    control.up(size=size, name=FLEET, groups="api:2:fixed")
    control.wait_callbacks(fleet)  # the new instances converge on the recorded release
    api_max = group_sizes(fleet, "api")[2]
    asg.update_auto_scaling_group(AutoScalingGroupName="web", MinSize=size, MaxSize=size)
    try:
        refused = playbook(fleet, "deploy.yml", "-e", "app_version=2.0.0", "-e", "deploy_min_healthy=100%")
        assert refused.returncode != 0
        assert "deploy_min_healthy='100%' is not valid" in refused.stdout
        refused = playbook(fleet, "deploy.yml", "-e", "app_version=2.0.0", "-e", "deploy_capacity=none")
        assert refused.returncode != 0
        assert re.search(r"ASG (web|api): DesiredCapacity \d+ is at MinSize", refused.stdout), refused.stdout[-3000:]
        assert lock_value(fleet) is None and group_sizes(fleet, "web") == (size, size, size)

        with under_load(fleet) as load:
            proc = playbook(fleet, "deploy.yml", "-e", "app_version=2.0.0")
        assert proc.returncode == 0, proc.stdout[-4000:]
        assert load.failed == 0, load.summary()
        assert f"web: {{'min_size': {size - 1}, 'max_size': {size}, 'desired_capacity': {size}}}" in proc.stdout
        assert f"api: {{'min_size': 1, 'max_size': {api_max}, 'desired_capacity': 2}}" in proc.stdout
        report = report_of(proc.stdout)
        assert report["result"] == "succeeded"
        for batch in report["batches"]:
            per_group = {}
            for host in batch["hosts"]:
                per_group[host["asg"]] = per_group.get(host["asg"], 0) + 1
            # min healthy 50%: at most size - ceil(size / 2) of web, 1 of api's 2 out at once.
            assert per_group.get("web", 0) <= size - (size + 1) // 2 and per_group.get("api", 0) <= 1, batch
        assert {h["asg"] for b in report["batches"] for h in b["hosts"]} == {"web", "api"}
        assert group_sizes(fleet, "web") == (size, size, size)
        assert group_sizes(fleet, "api") == (2, 2, api_max)
        api = asg.describe_auto_scaling_groups(AutoScalingGroupNames=["api"])["AutoScalingGroups"][0]["Instances"]
        assert {on_host(fleet, i["InstanceId"], f"/usr/local/sbin/{APP}-release", "current") for i in api} == {"2.0.0"}
        assert set(versions(fleet).values()) == {"2.0.0"}
        assert_fleet_at_rest(fleet)
    finally:
        asg.update_auto_scaling_group(AutoScalingGroupName="web", MinSize=0, MaxSize=30)
        # The api group stays for the zonal deploy, which removes it.


def test_a_zonal_deploy_moves_the_version_mix_one_az_at_a_time(fleet):
    """deploy_strategy zonal over web's and api's instances in 3 AZs (the api group of the test
    above, behind the same target group): from the balancer's answers, no host of an AZ answers
    the new release before every host of the AZ before it has stopped answering the old one,
    and the first AZ is watched its monitor period before the second starts."""
    asg = fleet.clients("autoscaling")
    try:
        groups = asg.describe_auto_scaling_groups(AutoScalingGroupNames=["web", "api"])["AutoScalingGroups"]
        zone_of = {i["InstanceId"]: i["AvailabilityZone"] for g in groups for i in g["Instances"]}
        # web's and api's instances, however many the tests before left (5 after the fixed-size
        # test alone, 6 once an earlier test scaled web out): what matters is 3 AZs.
        assert len(zone_of) >= 5 and len(set(zone_of.values())) == 3, zone_of
        with under_load(fleet) as load:
            proc = playbook(fleet, "deploy.yml", "-e", "app_version=4.0.0", "-e", "deploy_strategy=zonal",
                            "-e", "deploy_batch_size=100%", "-e", "deploy_zonal_monitor_seconds=15")
        assert proc.returncode == 0, proc.stdout[-4000:]
        assert load.failed == 0, load.summary()
        first_new, last_old = {}, {}
        for second, target, outcome in load.answered:
            if outcome == "4.0.0":
                first_new.setdefault(target, second)
            else:
                last_old[target] = second
        assert set(first_new) == set(zone_of), first_new  # every host answered the new release
        zones = sorted(set(zone_of.values()))
        hosts_in = {az: [iid for iid, z in zone_of.items() if z == az] for az in zones}
        for earlier, later in itertools.pairwise(zones):
            starts = min(first_new[iid] for iid in hosts_in[later])
            assert all(last_old.get(iid, -1) < starts for iid in hosts_in[earlier]), (earlier, later, first_new, last_old)
        monitor_gap = min(first_new[i] for i in hosts_in[zones[1]]) - max(first_new[i] for i in hosts_in[zones[0]])
        assert monitor_gap >= 15, (monitor_gap, first_new)
        report = report_of(proc.stdout)
        azs_by_batch = [{h["az"] for h in batch["hosts"]} for batch in report["batches"]]
        assert all(len(azs) == 1 for azs in azs_by_batch), azs_by_batch
        assert set(versions(fleet).values()) == {"4.0.0"}
        assert_fleet_at_rest(fleet)
    finally:
        asg.update_auto_scaling_group(AutoScalingGroupName="api", MinSize=0, DesiredCapacity=0)
        deadline = time.monotonic() + 300
        while asg.describe_auto_scaling_groups(AutoScalingGroupNames=["api"])["AutoScalingGroups"][0]["Instances"]:
            assert time.monotonic() < deadline, "the api group's instances did not go"
            time.sleep(2)


def test_instance_replaced_during_a_deploy_is_left_alone_and_its_replacement_ends_on_the_new_release(fleet):
    """While the canary is out, the group terminates an instance not yet deployed (a scale-in, a
    health replacement, a spot interruption: here the API call) and launches its replacement
    (Launch is never suspended). The terminated host is left alone and reported as vanished, not
    failed; the replacement boots on the release recorded then, and before the lock is released
    the deploy's sweep deploys it if it is not on the new release. The fleet ends on one release,
    and no request fails (AWS drains an instance before its group terminates it: so does the
    local fleet)."""
    asg = fleet.clients("autoscaling")
    before = {i["InstanceId"] for i in web_instances(fleet)}
    proc = deploy_in_background(fleet, "-e", "app_version=3.0.0", "-e", "deploy_batch_size=1")
    try:
        with under_load(fleet) as load:
            wait_for_canary(fleet, proc)
            victim = next(i["InstanceId"] for i in web_instances(fleet) if i["LifecycleState"] == "InService")
            asg.terminate_instance_in_auto_scaling_group(InstanceId=victim, ShouldDecrementDesiredCapacity=False)
            out, _ = proc.communicate(timeout=1500)
    finally:
        if proc.poll() is None:
            proc.kill()
    keep_log("deploy-replaced", out)
    assert proc.returncode == 0, out[-4000:]
    assert load.failed == 0, load.summary()
    report = report_of(out)
    assert report["result"] == "succeeded"
    statuses = {h["instance_id"]: h["status"] for b in report["batches"] for h in b["hosts"]}
    assert statuses[victim] == "vanished", report["batches"]
    assert victim not in report["left_out_of_service"]
    new = {i["InstanceId"] for i in web_instances(fleet)} - before
    assert len(new) == 1, new
    # The replacement may still be bootstrapping when the deploy ends (it then takes the release
    # recorded after the canary): wait for it, then every instance runs 3.0.0.
    deadline = time.monotonic() + 900
    while time.monotonic() < deadline and set(versions(fleet).values()) != {"3.0.0"}:
        time.sleep(5)
    assert set(versions(fleet).values()) == {"3.0.0"}, versions(fleet)
    assert_fleet_at_rest(fleet)


def _runner_events(artifacts: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((artifacts / "job_events").glob("*.json"))]


def _web_host_names(state) -> set[str]:
    web = {i["InstanceId"] for i in web_instances(state)}
    return {name for name, iid in _names_by_instance(state).items() if iid in web}


def test_ansible_runner_deploys_through_the_runner_private_data_dir(fleet, tmp_path):
    """runner/ as a user runs it: ansible-runner's CLI, then its artifacts, not the playbook's output."""
    ident = "e2e-runner-deploy"
    proc = subprocess.run([str(VENV_BIN / "ansible-runner"), "run", str(REPO / "runner"), "--artifact-dir", str(tmp_path),
                           "--ident", ident, "-p", "playbooks/deploy.yml", "--cmdline", "-e app_version=2.0.0"],
                          cwd=REPO, env=env_of(fleet), capture_output=True, text=True, timeout=1500)
    artifacts = tmp_path / ident
    assert (artifacts / "status").read_text().strip() == "successful", proc.stdout[-4000:]
    assert (artifacts / "rc").read_text().strip() == "0"
    events = _runner_events(artifacts)
    ok_hosts = {e["event_data"].get("host") for e in events
                if e["event"] == "runner_on_ok" and str(e["event_data"].get("playbook", "")).endswith("deploy.yml")}
    missing = _web_host_names(fleet) - ok_hosts
    assert not missing, f"no runner_on_ok event for {missing}"
    assert set(versions(fleet).values()) == {"2.0.0"}
    assert lb_version(fleet) == "2.0.0"
    assert_fleet_at_rest(fleet)


def test_execution_environment_reaches_the_fleet_under_runner_process_isolation(fleet, tmp_path):
    """The EE image (tools/ee) runs reach.yml against the fleet: runner mounts only the private data
    dir, so it gets real copies of the playbooks, ansible.cfg and the inventory; the SSH key's
    directory (key + known_hosts) is mounted at its own path; the collection is the image's."""
    image = "ec2fleet/ee:" + subprocess.run(
        [str(VENV_BIN / "python"), "-c", "import yaml; print(yaml.safe_load(open('galaxy.yml'))['version'])"],
        cwd=REPO, capture_output=True, text=True, check=True).stdout.strip()
    if subprocess.run(["docker", "image", "inspect", image], capture_output=True).returncode != 0:
        pytest.fail(f"execution environment image {image} is missing: build it with tools/ee (tools/test ee)")
    pdd = tmp_path / "pdd"
    (pdd / "env").mkdir(parents=True)
    shutil.copytree(REPO / "playbooks", pdd / "project" / "playbooks")
    shutil.copy(REPO / "ansible.cfg", pdd / "project" / "ansible.cfg")
    (pdd / "inventory").mkdir()
    shutil.copy(REPO / INVENTORY, pdd / "inventory" / "local.ec2_fleet.yml")
    shutil.copytree(REPO / "inventory" / "group_vars", pdd / "inventory" / "group_vars")
    (pdd / "env" / "envvars").write_text(json.dumps({**fleet.env(), "ANSIBLE_FORCE_COLOR": "0"}))
    key_dir = Path(fleet.env()["EC2FLEET_LOCAL_SSH_KEY"]).parent
    ident = "e2e-ee-reach"
    proc = subprocess.run([str(VENV_BIN / "ansible-runner"), "run", str(pdd), "--ident", ident,
                           "-p", "playbooks/reach.yml", "--process-isolation",
                           "--process-isolation-executable", "docker", "--container-image", image,
                           "--container-option=--network=host", "--container-option=--label=io.ec2fleet.managed=true",
                           "--container-volume-mount", f"{key_dir}:{key_dir}"],
                          cwd=tmp_path, env=env_of(fleet), capture_output=True, text=True, timeout=900)
    artifacts = pdd / "artifacts" / ident
    assert (artifacts / "status").read_text().strip() == "successful", proc.stdout[-4000:]
    assert (artifacts / "rc").read_text().strip() == "0"
    ok_hosts = {e["event_data"].get("host") for e in _runner_events(artifacts) if e["event"] == "runner_on_ok"}
    missing = set(_names_by_instance(fleet)) - ok_hosts
    assert not missing, f"the EE did not reach {missing}: {proc.stdout[-3000:]}"




# -- the alarm gate ----------------------------------------------------------------------------
GATE = "e2e-deploy-gate"


class Fault:
    """A fault CloudWatch sees: a datapoint above the gate alarm's threshold every 2 s while the
    `with` block lasts, from `start()` on (fleetd's alarm evaluator, standing in for CloudWatch,
    puts the alarm in ALARM at the next complete period). The alarm is one the test makes, on a
    metric of its own: what fires it is under the test's control, the rest is the real gate."""

    def __init__(self, state):
        self.cloudwatch = state.clients("cloudwatch")
        self.cloudwatch.put_metric_alarm(AlarmName=GATE, Namespace="e2e", MetricName="Fault", Statistic="Maximum",
                                         Period=10, EvaluationPeriods=1, Threshold=0.5,  # 10 s, as the local fleet's
                                         ComparisonOperator="GreaterThanThreshold", TreatMissingData="notBreaching")
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._feed, daemon=True)

    def _feed(self):
        while not self.stopping.wait(2):
            self.cloudwatch.put_metric_data(Namespace="e2e", MetricData=[{"MetricName": "Fault", "Value": 1.0}])

    def start(self):
        self.cloudwatch.put_metric_data(Namespace="e2e", MetricData=[{"MetricName": "Fault", "Value": 1.0}])
        self.thread.start()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stopping.set()


def gate_alarm(state, wanted: str, timeout: float = 120, name: str = GATE) -> None:
    """The gate alarm `name` (metric or composite; by default the one Fault makes) is `wanted`;
    OK only once it has stayed OK for 20 s (two periods and the evaluator's settle time): a
    fault of an earlier test may still be in the last period, and would fire it moments later."""
    cloudwatch = state.clients("cloudwatch")
    steady = 20 if wanted == "OK" else 0
    deadline, since = time.monotonic() + timeout, None
    while time.monotonic() < deadline:
        found = cloudwatch.describe_alarms(AlarmNames=[name], AlarmTypes=["MetricAlarm", "CompositeAlarm"])
        if [a["StateValue"] for a in found["MetricAlarms"] + found["CompositeAlarms"]] != [wanted]:
            since = None
        elif since is None:
            since = time.monotonic()
        if since is not None and time.monotonic() - since >= steady:
            return
        time.sleep(1)
    pytest.fail(f"alarm {name} did not stay {wanted} in {timeout:.0f}s")


def other_release(state) -> str:
    current = set(versions(state).values())
    assert len(current) == 1, current
    return next(v for v in ("5.0.0", "4.0.0") if v not in current)


def test_a_gate_alarm_in_alarm_refuses_the_deploy_before_any_host_is_touched(fleet):
    before = versions(fleet)
    with Fault(fleet) as fault:
        fault.start()
        gate_alarm(fleet, "ALARM")
        proc = playbook(fleet, "deploy.yml", "-e", f"app_version={other_release(fleet)}",
                        "-e", json.dumps({"deploy_alarms": [GATE]}))
    assert proc.returncode != 0, proc.stdout[-3000:]
    assert "The deploy cannot start, no host was touched: the alarm gate is closed" in proc.stdout, proc.stdout[-3000:]
    assert GATE in proc.stdout
    assert versions(fleet) == before
    assert_fleet_at_rest(fleet)


FAULTY = "6.0.0"


def faulty_release(tmp_path: Path, version: str, only_while: str = "") -> Path:
    """A release of the app that passes /health but answers 500 to every third request on `/`
    (per gunicorn worker), from the start or `only_while` that file exists on the host: the
    app's source, copied, with that one change. Built into its own dist directory (the deploy's
    app_artifact_local_dir), so no later build of the version in dist/ can be it."""
    source = tmp_path / "app"
    shutil.copytree(REPO / "app", source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    wsgi = source / "sampleapp" / "wsgi.py"
    text = wsgi.read_text()
    route, names = '    if path == "/":\n', 'NAME = "sampleapp"\n'
    assert route in text and names in text, "the app's `/` route moved: update the e2e fault"
    text = text.replace(names, names + "_PAGES = __import__('itertools').count(1)\n")
    trigger = f"__import__('os').path.exists({only_while!r}) and " if only_while else ""
    text = text.replace(route, route + f'        if {trigger}next(_PAGES) % 3 == 0:\n'
                        '            return _json(start_response, "500 Internal Server Error", {"error": "e2e fault"})\n')
    wsgi.write_text(text)
    dist = tmp_path / "dist"
    subprocess.run([str(REPO / "tools" / "build-release"), version, "--source", str(source), "--dist", str(dist)],
                   cwd=REPO, check=True, capture_output=True)
    return dist


@functools.cache
def shipped_gate(state) -> str:
    """playbooks/deploy-alarms.yml's alarms for the web tier, as an operator makes them (log
    groups first), once per fleet; the name of the composite alarm a deploy is gated on."""
    for name, extra in (("cloudwatch_log_groups.yml", ["-e", "cloudwatch_agent_env=local"]), ("deploy-alarms.yml", [])):
        proc = playbook(state, name, *extra)
        assert proc.returncode == 0, proc.stdout[-3000:]
    composites = state.clients("cloudwatch").describe_alarms(AlarmTypes=["CompositeAlarm"])["CompositeAlarms"]
    (gate,) = [a["AlarmName"] for a in composites if a["AlarmName"].endswith("-web-deploy-gate")]
    return gate


def answered_5xx(load: Load) -> set[str]:
    """The instances that answered 500; every failed request of the load is one of those answers
    (none failed otherwise: no refused connection, no other status, no answer without a target)."""
    answers = [target for _, target, outcome in load.answered if outcome == "HTTP 500"]
    assert load.failed == len(answers), load.summary()
    return set(answers)


def assert_stopped_by_target_5xx(report: dict, gate: str, rolled_back: list[int]) -> None:
    stopped = report["stopped_by"]
    assert stopped["kind"] == "alarm" and stopped["alarm"] == gate, stopped
    assert "target-5xx" in stopped["reason"], stopped
    assert report["rolled_back_batches"] == rolled_back, report


def test_a_release_answering_5xx_fires_the_shipped_alarm_in_the_canary_bake_and_only_the_canary_goes_back(
        fleet, tmp_path):
    """Must show (issue 16): the release passes /health, so the health gate lets the canary in;
    its 5xx answers on `/` reach the balancer's metrics, the shipped target-5xx alarm fires
    (the local fleet's evaluator standing in for CloudWatch's), the deploy gate with it, and the
    canary is switched back during its bake. Every failed request was answered by the canary."""
    gate = shipped_gate(fleet)
    dist = faulty_release(tmp_path, FAULTY)
    gate_alarm(fleet, "OK", name=gate)
    before = versions(fleet)
    with under_load(fleet, page=True) as load:
        proc = playbook(fleet, "deploy.yml", "-e", f"app_version={FAULTY}", "-e", f"app_artifact_local_dir={dist}",
                        "-e", "deploy_batch_size=1", "-e", "deploy_canary_bake_seconds=120",
                        "-e", json.dumps({"deploy_alarms": [gate], "deploy_alarm_poll_interval": 2}))
    assert proc.returncode != 0, proc.stdout[-4000:]
    report = report_of(proc.stdout)
    assert_stopped_by_target_5xx(report, gate, [1])
    batches = report["batches"]
    (canary,) = batches[0]["hosts"]
    assert canary["status"] == "rolled_back", batches
    assert all(h["status"] == "not_started" for b in batches[1:] for h in b["hosts"]), batches
    assert versions(fleet) == before
    canary_id = _names_by_instance(fleet)[canary["host"]]
    assert answered_5xx(load) == {canary_id}, load.summary()  # nothing failed that the canary did not answer
    assert {o for _, target, o in load.answered if target != canary_id} <= set(before.values())
    assert_fleet_at_rest(fleet)


LATE_FAULTY, FAULT_FILE = "7.0.0", "/etc/sampleapp-e2e-fault"


def test_a_fault_on_the_second_batch_fires_the_alarm_and_every_batch_goes_back_newest_first(fleet, tmp_path):
    """Must show (issue 16): a release that goes bad only after the canary. The canary bakes
    clean; once the second batch's host is back in service on the release, a fault is added to
    it (its `/` starts answering 5xx), the shipped alarm fires during that batch's bake, and
    every batch this deploy moved is switched back, newest first: the fleet ends on the previous
    release, at rest. Every failed request was answered by the faulty host."""
    gate = shipped_gate(fleet)
    dist = faulty_release(tmp_path, LATE_FAULTY, only_while=FAULT_FILE)
    gate_alarm(fleet, "OK", name=gate)
    before = versions(fleet)
    proc = deploy_in_background(fleet, "-e", f"app_version={LATE_FAULTY}", "-e", f"app_artifact_local_dir={dist}",
                                "-e", "deploy_batch_size=1", "-e", "deploy_bake_seconds=45",
                                "-e", "deploy_canary_bake_seconds=0",  # the canary bakes 45 s too, not 300
                                "-e", json.dumps({"deploy_alarms": [gate], "deploy_alarm_poll_interval": 2}))
    switched, faulty = [], None
    try:
        with under_load(fleet, page=True) as load:
            deadline = time.monotonic() + 900
            while faulty is None and time.monotonic() < deadline and proc.poll() is None:
                in_service = {i["InstanceId"] for i in web_instances(fleet) if i["LifecycleState"] == "InService"}
                switched += [iid for iid, version in versions(fleet).items()
                             if version == LATE_FAULTY and iid not in switched]
                if len(switched) >= 2 and switched[1] in in_service:
                    faulty = switched[1]  # the second batch's host, back in service: the fault begins
                    on_host(fleet, faulty, "touch", FAULT_FILE)
                time.sleep(1)
            out, _ = proc.communicate(timeout=1500)
    finally:
        if proc.poll() is None:
            proc.kill()
        for inst in web_instances(fleet):
            on_host(fleet, inst["InstanceId"], "rm", "-f", FAULT_FILE)
    keep_log("deploy-late-fault", out)
    assert faulty, f"the second batch never came back in service: {out[-3000:]}"
    assert proc.returncode != 0, out[-4000:]
    assert_stopped_by_target_5xx(report_of(out), gate, [2, 1])
    assert versions(fleet) == before
    # New instances install the release the fleet is back on, never the candidate that failed
    # (also when this is the fleet's first deploy: no record before it, one release on every host).
    assert recorded_release(fleet) == next(iter(set(before.values())))
    assert answered_5xx(load) == {faulty}, (load.summary(), faulty)
    assert_fleet_at_rest(fleet)


def paused_at(state, number: int, deploy: subprocess.Popen, timeout: float = 600) -> dict:
    """The deploy lock's checkpoint entry once the run says it is paused at checkpoint `number`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and deploy.poll() is None:
        point = ((lock_value(state) or {}).get("data") or {}).get("checkpoint") or {}
        if point.get("state") == "paused" and point.get("number") == number:
            return point
        time.sleep(1)
    pytest.fail(f"the deploy did not pause at checkpoint {number} (exit {deploy.poll()})")


def test_checkpoints_wait_for_an_operator_who_resumes_then_aborts_from_another_controller(fleet, tmp_path):
    """deploy_checkpoints at 1/n and 2/n of the web hosts (however many the tests before left),
    deploy_checkpoint_wait resume, one host per batch: the rollout pauses after batch 1 and after
    batch 2. The operator answers with
    playbooks/deploy-resume.yml from another controller (its own process and empty fact cache:
    the lock's SSM record is the only channel): an answer for the wrong checkpoint is refused in
    one line, checkpoint 1 is resumed, checkpoint 2 aborted, and the abort switches back every
    batch, newest first, as an alarm would. No request fails."""
    before = versions(fleet)
    target = other_release(fleet)
    operator = fresh_controller(tmp_path)
    hosts = len(web_instances(fleet))
    assert hosts >= 3, hosts
    # A checkpoint sits at the first batch boundary at or past its percentage: 1/n and 2/n of n hosts
    # (rounded down) are reached by batches 1 and 2 exactly.
    percents = [100 // hosts, 200 // hosts]
    deploy = deploy_in_background(fleet, "-e", f"app_version={target}", "-e", "deploy_batch_size=1",
                                  "-e", "deploy_canary_bake_seconds=3", "-e", "deploy_checkpoint_wait=resume",
                                  "-e", json.dumps({"deploy_checkpoints": percents}))
    try:
        with under_load(fleet) as load:
            point = paused_at(fleet, 1, deploy)
            assert (point["batch"], point["hosts_done"], point["hosts_total"]) == (1, 1, hosts), point
            wrong = playbook(fleet, "deploy-resume.yml", "-e", "deploy_resume_checkpoint=2", env=operator)
            assert wrong.returncode != 0 and "checkpoint 1" in wrong.stdout, wrong.stdout[-3000:]
            resumed = playbook(fleet, "deploy-resume.yml", env=operator)
            assert resumed.returncode == 0, resumed.stdout[-3000:]
            paused_at(fleet, 2, deploy)
            aborted = playbook(fleet, "deploy-resume.yml", "-e", "deploy_resume=abort",
                               "-e", "deploy_resume_reason='e2e: p99 up'", env=operator)
            assert aborted.returncode == 0, aborted.stdout[-3000:]
            out, _ = deploy.communicate(timeout=900)
    finally:
        if deploy.poll() is None:
            deploy.kill()
    keep_log("deploy-checkpoints", out)
    assert deploy.returncode != 0, out[-4000:]
    report = report_of(out)
    assert report["stopped_by"]["kind"] == "abort" and "e2e: p99 up" in report["stopped_by"]["reason"], report["stopped_by"]
    assert report["rolled_back_batches"] == [2, 1], report
    assert versions(fleet) == before
    assert load.failed == 0, load.summary()
    assert_fleet_at_rest(fleet)


def test_site_converges_the_web_hosts_over_ssm_with_the_bastion_stopped(fleet):
    """A fleet with no bastion: the plugin's `ssm` mode (inventory/local-ssm.ec2_fleet.yml, its
    wiring untouched; the local fleet's Session Manager stand-in in the AWS CLI's place) carries
    site.yml and the ops CLI to every web host while the bastion is stopped."""
    bastion = containers.container_name(fleet.name, fleet.data["bastion_instance_id"])
    web = {i["InstanceId"] for i in web_instances(fleet)}
    containers.docker("stop", "--time", "5", bastion)
    try:
        converge = playbook(fleet, "site.yml", "--limit", "role_web", inventory="inventory/local-ssm.ec2_fleet.yml")
        assert converge.returncode == 0, converge.stdout[-4000:] + converge.stderr[-2000:]
        recap = dict((host, (unreachable, failed)) for host, unreachable, failed in RECAP.findall(converge.stdout))
        assert {"i-" + host.rsplit("-i-", 1)[1] for host in recap} == web, recap  # web-i-... names
        assert set(recap.values()) == {("0", "0")}, recap
        ops_run = fab(fleet, "run", "--inventory", "inventory/local-ssm.ec2_fleet.yml", "--group", "role_web",
                      "--cmd", "cat /etc/hostname")
        assert ops_run.returncode == 0, ops_run.stdout[-3000:] + ops_run.stderr[-2000:]
    finally:
        containers.docker("start", bastion)

def test_down_leaves_nothing(fleet):
    port = fleet.data["emulator_port"]
    control.down(FLEET)
    assert containers.list_fleet(FLEET) == {}
    assert all(info["port"] != port for info in emulator.running_servers())
    assert not control.exists(FLEET)

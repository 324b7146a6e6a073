"""deploy_lock state=heartbeat against the emulator: it extends the expiry while the deploy's
process lives, stops on release, on takeover and when that process dies, and runs as the async
task the deploy starts; the writes of one run (the deploy's updates, its heartbeat) never lose
each other: the history check and re-apply, driven through every interleaving and under a
concurrent stress, with and without the controller-local mutex."""

from __future__ import annotations

import contextlib
import json
import subprocess
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from ansible_collections.ec2fleet.fleet.plugins.module_utils import aws as utils
from ansible_collections.ec2fleet.fleet.plugins.module_utils import lock_store
from ansible_collections.ec2fleet.fleet.plugins.modules import deploy_lock as lockmod
from deploy_support import BackgroundModule, client, run_module, run_tasks, wait_for

pytestmark = pytest.mark.emulator

NAME = "/sampleapp/prod/deploy-lock"
LOCK_ARGS = {"app": "sampleapp", "env": "prod"}


def stored():
    try:
        return json.loads(client("ssm").get_parameter(Name=NAME)["Parameter"]["Value"])
    except client("ssm").exceptions.ParameterNotFound:
        return None


def parameter_names():
    ssm = client("ssm")
    return {p["Name"] for page in ssm.get_paginator("describe_parameters").paginate() for p in page["Parameters"]}


def when(text):
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def iso(delta_seconds):
    return (datetime.now(UTC) + timedelta(seconds=delta_seconds)).strftime("%Y-%m-%dT%H:%M:%SZ")


def ids(count, start=0):
    return [f"i-{n:017x}" for n in range(start, start + count)]


@pytest.fixture
def sleeper():
    """A process standing in for the deploy's ansible-playbook: the lock records its pid."""
    proc = subprocess.Popen(["sleep", "300"])
    yield proc
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def take(pid, ttl, **extra):
    args = {**LOCK_ARGS, "version": "2.0.0", "pid": pid, "ttl": ttl, **extra}
    result = run_module("ec2fleet.fleet.deploy_lock", args)
    assert result["changed"] is True, result
    return result


class Background(BackgroundModule):
    """``ansible localhost -m deploy_lock -a {state: heartbeat...}`` running in the background."""

    def __init__(self, args):
        super().__init__("ec2fleet.fleet.deploy_lock", args)


@pytest.fixture
def background():
    started = []

    def start(**args):
        job = Background({**LOCK_ARGS, "state": "heartbeat", **args})
        started.append(job)
        return job

    yield start
    for job in started:
        job.stop()


# --- the module, end to end -----------------------------------------------------------------------

def test_heartbeat_keeps_the_lock_alive_past_its_ttl(aws, sleeper):
    acquired = take(sleeper.pid, ttl=3)
    started = time.monotonic()
    result = run_module("ec2fleet.fleet.deploy_lock", {**LOCK_ARGS, "state": "heartbeat", "run_id": acquired["run_id"],
                                                       "ttl": 3, "heartbeat_interval": 1, "heartbeat_max_seconds": 5})
    assert result["changed"] is True and result["stopped"] == "max_seconds", result
    assert result["beats"] >= 3 and result["heartbeat_errors"] == 0
    assert time.monotonic() - started >= 5
    lock = stored()
    # The ttl of the lock as taken is long past; the heartbeat kept pushing its expiry.
    assert when(lock["expires_at"]) > when(acquired["lock"]["expires_at"]) + timedelta(seconds=2)
    # It beat after the lock as taken had expired (not "expires_at > now": the module's exit
    # alone can outlast a 3 s ttl on a loaded machine).
    assert when(lock["heartbeat_at"]) > when(acquired["lock"]["expires_at"])
    assert when(lock["expires_at"]) - when(lock["heartbeat_at"]) == timedelta(seconds=3)
    assert lock["run_id"] == acquired["run_id"] and lock["data"] == {}


def test_heartbeat_stops_when_the_lock_is_released(aws, sleeper, background):
    acquired = take(sleeper.pid, ttl=5)
    job = background(run_id=acquired["run_id"], ttl=5, heartbeat_interval=1, heartbeat_max_seconds=60)
    assert wait_for(lambda: "heartbeat_at" in (stored() or {}), 60), "no beat"  # ansible starting under load
    released = run_module("ec2fleet.fleet.deploy_lock",
                          {**LOCK_ARGS, "state": "released", "run_id": acquired["run_id"]})
    assert released["changed"] is True
    result = job.result(timeout=20)
    assert result["stopped"] == "released" and "the lock was released" in result["msg"] and result["beats"] >= 1
    assert result.get("failed") is not True and result["lock"] == {}
    assert parameter_names() == set()  # the heartbeat did not bring the lock back


def test_heartbeat_stops_when_the_deploy_process_dies(aws, sleeper, background):
    acquired = take(sleeper.pid, ttl=5)
    job = background(run_id=acquired["run_id"], ttl=5, heartbeat_interval=1, heartbeat_max_seconds=60)
    assert wait_for(lambda: "heartbeat_at" in (stored() or {}), 60), "no beat"  # ansible starting under load
    sleeper.kill()
    sleeper.wait()
    killed = datetime.now(UTC)
    result = job.result(timeout=10)
    assert result["stopped"] == "process_gone" and f"process {sleeper.pid} is no longer running" in result["msg"]
    assert result.get("failed") is not True
    lock = stored()
    # No beat after the death: the lock expires one ttl after the last one.
    assert when(lock["heartbeat_at"]) <= killed + timedelta(seconds=1)  # a beat already under way, at most
    assert when(lock["expires_at"]) <= killed + timedelta(seconds=6)
    # The next run takes the lock over (its process is gone; by now it may have expired too).
    taken = run_module("ec2fleet.fleet.deploy_lock", {**LOCK_ARGS, "version": "2.0.1"})
    assert taken["changed"] is True and taken["recovered"]["run_id"] == acquired["run_id"]


def test_heartbeat_stops_when_another_run_takes_the_lock_over(aws, sleeper, background):
    acquired = take(sleeper.pid, ttl=5)
    job = background(run_id=acquired["run_id"], ttl=5, heartbeat_interval=1, heartbeat_max_seconds=60)
    assert wait_for(lambda: "heartbeat_at" in (stored() or {}), 60), "no beat"  # ansible starting under load
    theirs = {"owner": "bob@c2", "controller": "c2", "pid": 7, "run_id": "theirs", "expires_at": iso(600), "data": {}}
    client("ssm").put_parameter(Name=NAME, Value=json.dumps(theirs), Type="String", Overwrite=True)
    result = job.result(timeout=20)
    assert result["stopped"] == "taken_over" and "held by another run" in result["msg"]
    assert result["lock"]["run_id"] == "theirs"
    assert stored() == theirs


def test_heartbeat_refusals_and_check_mode(aws, sleeper):
    theirs = {"owner": "bob@c2", "controller": "c2", "pid": 7, "run_id": "theirs", "expires_at": iso(600), "data": {}}
    client("ssm").put_parameter(Name=NAME, Value=json.dumps(theirs), Type="String")
    beat = {**LOCK_ARGS, "state": "heartbeat", "ttl": 60, "heartbeat_interval": 1}
    results = run_tasks([
        {"name": "another controller's lock", "ec2fleet.fleet.deploy_lock": {**beat, "run_id": "theirs"},
         "ignore_errors": True},
        {"name": "not ours", "ec2fleet.fleet.deploy_lock": {**beat, "run_id": "mine"}},
        {"name": "no lock", "ec2fleet.fleet.deploy_lock": {**beat, "name": "/nothing/here", "run_id": "mine"}},
        {"name": "interval not shorter than ttl", "ec2fleet.fleet.deploy_lock": {**beat, "run_id": "theirs",
                                                                                 "heartbeat_interval": 60},
         "ignore_errors": True},
        {"name": "no run id", "ec2fleet.fleet.deploy_lock": {**LOCK_ARGS, "state": "heartbeat"}, "ignore_errors": True},
    ])
    elsewhere, not_ours, nothing, interval, no_run = results
    assert elsewhere["failed"] is True and "was taken on c2 (pid 7): its heartbeat must run there" in elsewhere["msg"]
    assert not_ours["stopped"] == "taken_over" and not_ours["changed"] is False
    assert nothing["stopped"] == "released" and nothing["changed"] is False
    assert interval["failed"] is True and "heartbeat_interval must be positive and shorter than ttl" in interval["msg"]
    assert no_run["failed"] is True and "run_id" in no_run["msg"]
    assert stored() == theirs
    client("ssm").delete_parameter(Name=NAME)
    acquired = take(sleeper.pid, ttl=60)
    checked = run_module("ec2fleet.fleet.deploy_lock", {**beat, "run_id": acquired["run_id"]}, check=True)
    assert checked["stopped"] == "check_mode" and f"while process {sleeper.pid} runs" in checked["msg"]
    assert "heartbeat_at" not in stored()


def test_the_deploy_wiring_an_async_heartbeat_started_after_the_lock(aws):
    """As playbooks/deploy.yml starts it: once, right after taking the lock, async with poll 0. The
    lock (ttl 4 s) outlives its ttl while the play runs, and the job ends with the play."""
    lock_args = {**LOCK_ARGS, "ttl": 4}
    results = run_tasks([
        {"name": "Take the deploy lock", "ec2fleet.fleet.deploy_lock": {**lock_args, "version": "2.0.0"},
         "register": "deploy_lock"},
        {"name": "Keep the deploy lock alive while this run lasts", "ec2fleet.fleet.deploy_lock": {
            **lock_args, "state": "heartbeat", "run_id": "{{ deploy_lock.run_id }}", "heartbeat_interval": 1,
            "heartbeat_max_seconds": 120}, "async": 150, "poll": 0, "changed_when": False},
        {"name": "A batch longer than the ttl", "ansible.builtin.wait_for": {"timeout": 7}},
        {"name": "Another run meanwhile", "ec2fleet.fleet.deploy_lock": {**LOCK_ARGS, "run_id": "other", "pid": 1},
         "ignore_errors": True},
        {"name": "Record the batch", "ec2fleet.fleet.deploy_lock": {
            **lock_args, "state": "updated", "run_id": "{{ deploy_lock.run_id }}", "data": {"standby": ids(500)}}},
        {"name": "Release", "ec2fleet.fleet.deploy_lock": {**LOCK_ARGS, "state": "released",
                                                            "run_id": "{{ deploy_lock.run_id }}"}},
    ], env={"ANSIBLE_STRATEGY": "linear"})
    _acquired, job, _waited, other, updated, released = results
    assert job.get("started") == 1 and job.get("ansible_job_id"), job
    assert other["failed"] is True and "held by a live run" in other["msg"] and "last heartbeat" in other["msg"]
    assert updated["lock"]["data"] == {"standby": ids(500)} and updated["parts"]
    assert released["changed"] is True
    results_file = Path(job["results_file"])

    def finished():
        try:
            return json.loads(results_file.read_text()).get("stopped")
        except (OSError, ValueError):
            return None

    assert wait_for(finished, 15), results_file.read_text() if results_file.exists() else "no results file"
    outcome = json.loads(results_file.read_text())
    assert outcome["stopped"] in ("released", "process_gone") and outcome["beats"] >= 4, outcome
    assert parameter_names() == set()
    with contextlib.suppress(OSError):
        results_file.unlink()


# --- one run's concurrent writes, in this process --------------------------------------------------

class _Module:
    def __init__(self, **params):
        self.params = {"run_id": "mine", "version": "2.0.0", "ttl": 600, "data": {}, "owner": None, "pid": None,
                       "force": False, **params}
        self.check_mode = False

    def fail_json(self, **kwargs):
        raise AssertionError(kwargs)


def store(cls=None):
    return (cls or lockmod.LockStore)(utils.AwsCalls({}), NAME, "Standard")


def put_ours(**data):
    value = {"owner": "ops@here", "controller": "here", "pid": 1, "run_id": "mine", "expires_at": iso(600),
             "ttl": 600, "data": data}
    client("ssm").put_parameter(Name=NAME, Value=json.dumps(value), Type="String", Overwrite=True)


def update(data, with_store=None):
    return lockmod.update(_Module(data=data), with_store or store(), datetime.now(UTC))


def full():
    holder, _version = store().read()
    return store().resolve(holder)[0]


@pytest.fixture
def no_mutex(monkeypatch):
    """Without the controller-local mutex: the parameter history alone must keep every write."""
    @contextlib.contextmanager
    def none(_key, timeout=0):
        yield False

    monkeypatch.setattr(lock_store, "local_mutex", none)


def interleaving(action):
    """A store whose next write of the main value is preceded by ``action()`` (another writer's
    real write to the emulator, landing between this writer's read and its write)."""
    class Interleaved(lockmod.LockStore):
        fired = False

        def write_text(self, text):
            if not Interleaved.fired:
                Interleaved.fired = True
                action()
            return super().write_text(text)

    return store(Interleaved)


def test_a_heartbeat_over_a_concurrent_update_applies_its_expiry_again_on_top(aws, no_mutex):
    put_ours(suspended={"web": ["AZRebalance"]})
    newer = {"standby": ids(300)}
    outcome, value, reapplied = lockmod.extend(interleaving(lambda: update(newer)), "mine", 900)
    assert (outcome, reapplied) == ("extended", 1)
    lock = full()
    assert lock["data"] == {"suspended": {"web": ["AZRebalance"]}, **newer}  # the update's data survived
    assert lock["heartbeat_at"] == value["heartbeat_at"] and lock["ttl"] == 600


def test_an_update_over_a_concurrent_heartbeat_applies_its_data_again_on_top(aws, no_mutex):
    put_ours()
    beaten = {}

    def beat():
        beaten["value"] = lockmod.extend(store(), "mine", 900)[1]

    result = update({"standby": ids(300)}, interleaving(beat))
    assert result["reapplied"] == 1
    lock = full()
    assert lock["data"] == {"standby": ids(300)} and lock["heartbeat_at"] == beaten["value"]["heartbeat_at"]
    assert result["lock"] == lock
    assert parameter_names() == {NAME, *result["parts"]}


def test_a_write_that_meets_another_runs_lock_puts_it_back(aws, no_mutex):
    put_ours()
    theirs = {"run_id": "theirs", "controller": "c2", "pid": 7, "expires_at": iso(600), "data": {}}

    def takeover():
        client("ssm").put_parameter(Name=NAME, Value=json.dumps(theirs), Type="String", Overwrite=True)

    outcome, value, _reapplied = lockmod.extend(interleaving(takeover), "mine", 900)
    assert outcome == "taken_over" and value == theirs and stored() == theirs
    put_ours()
    with pytest.raises(utils.FleetAWSError, match="run mine no longer holds it, not updating it"):
        update({"standby": ids(300)}, interleaving(takeover))
    assert stored() == theirs


def test_a_heartbeat_does_not_bring_a_released_lock_back(aws, no_mutex):
    put_ours()
    update({"standby": ids(300)})

    def release():
        lockmod.release(_Module(), store())

    outcome, _value, _reapplied = lockmod.extend(interleaving(release), "mine", 900)
    assert outcome == "released"
    assert parameter_names() == set()


def test_a_retried_write_is_recognised_as_ours(aws, no_mutex):
    """botocore sends a PutParameter again when its answer is lost: two versions of our value."""
    class Retried(lockmod.LockStore):
        def write_text(self, text):
            super().write_text(text)
            return super().write_text(text)

    put_ours()
    outcome, _value, reapplied = lockmod.extend(store(Retried), "mine", 900)
    assert (outcome, reapplied) == ("extended", 0)
    result = update({"standby": ids(300)}, store(Retried))
    assert result["reapplied"] == 0 and full()["data"] == {"standby": ids(300)}


@pytest.mark.parametrize("mutex", [False, True], ids=["history-check-alone", "with-local-mutex"])
def test_concurrent_updates_and_heartbeats_lose_nothing(aws, monkeypatch, mutex):
    """The deploy updates the lock in a loop (its data crossing the size where parts are needed,
    both ways) while a heartbeat beats as fast as it can: at the end the lock holds the last update
    and the heartbeat's field, and no part is left behind. Without the mutex the history
    check must repair real interleavings; with it, there are none to repair."""
    if not mutex:
        @contextlib.contextmanager
        def none(_key, timeout=0):
            yield False

        monkeypatch.setattr(lock_store, "local_mutex", none)
    put_ours()
    iterations = 60
    done = threading.Event()
    counts = {"update": 0, "beat": 0}
    outcomes, errors = set(), []

    def deploy():
        try:
            deploy_store = store()
            for n in range(iterations):
                data = {"n": n, "standby": ids(20 if n % 3 == 0 else 250 + n, n)}
                counts["update"] += update(data, deploy_store)["reapplied"]
        except Exception as exc:  # reported by the assertion below
            errors.append(exc)
        finally:
            done.set()

    def heart():
        try:
            heart_store = store()
            while not done.is_set():
                outcome, _value, reapplied = lockmod.extend(heart_store, "mine", 900)
                outcomes.add(outcome)
                counts["beat"] += reapplied
                time.sleep(0.001)
        except Exception as exc:  # reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=deploy), threading.Thread(target=heart)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(300)
    assert not errors, errors
    assert outcomes == {"extended"}
    last = iterations - 1
    lock = full()
    assert lock["data"] == {"n": last, "standby": ids(20 if last % 3 == 0 else 250 + last, last)}
    assert "heartbeat_at" in lock and lock["run_id"] == "mine"
    # Every write either followed the value it was built on or was applied again on top.
    if mutex:
        assert counts == {"update": 0, "beat": 0}
    else:
        assert counts["update"] + counts["beat"] > 0, "no interleaving happened: the test proved nothing"
    main, _version = store().read()
    used = {store().part_name(n) for n in lockmod.part_numbers(main.get("parts"))}
    assert parameter_names() == {NAME, *used}

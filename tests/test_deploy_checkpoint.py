"""ec2fleet.fleet.deploy_checkpoint against the emulator: the deploy pauses at a checkpoint in its
lock's record and waits, extending the lock, while an operator resumes or aborts it through
playbooks/deploy-resume.yml from another process (a thread here); a checkpoint nobody answers times
out and a late answer is refused; every answer that does not fit a live paused run is refused in
one line; the lock's other data (continuation parameters included) is left as it was."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
from ansible_collections.ec2fleet.fleet.plugins.module_utils import aws as utils
from ansible_collections.ec2fleet.fleet.plugins.module_utils import lock_store
from ansible_collections.ec2fleet.fleet.plugins.module_utils.lock_store import LockStore
from ansible_collections.ec2fleet.fleet.plugins.modules import deploy_checkpoint as checkpoint
from deploy_support import JSON_ENV, REPO, BackgroundModule, client, run_module, wait_for

pytestmark = pytest.mark.emulator

NAME = "/sampleapp/prod/deploy-lock"
LOCK_ARGS = {"app": "sampleapp", "env": "prod"}
AT = {"number": 1, "batch": 2, "percents": [10], "hosts_done": 3, "hosts_total": 24}
STANDBY = [f"i-{n:017x}" for n in range(1000)]  # large enough for continuation parameters


def when(text):
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def record():
    """The lock as stored, its data read back whole."""
    store = LockStore(utils.AwsCalls({}), NAME, "Standard")
    stored, _version = store.read()
    return None if stored is None else store.resolve(stored)[0]


def paused():
    lock = record()
    return bool(lock) and (lock["data"].get("checkpoint") or {}).get("state") == "paused"


@pytest.fixture
def deploy():
    """A live deploy's lock: a process standing in for its ansible-playbook, and data in parts."""
    proc = subprocess.Popen(["sleep", "300"])
    acquired = run_module("ec2fleet.fleet.deploy_lock", {**LOCK_ARGS, "version": "2.0.0", "pid": proc.pid, "ttl": 600,
                                                         "data": {"standby": STANDBY, "suspended": {"web": ["AZRebalance"]}}})
    assert acquired["changed"] is True and acquired["parts"], acquired
    yield acquired["run_id"]
    proc.kill()
    proc.wait()


class Waiting(BackgroundModule):
    """The deploy's side, ``ansible localhost -m ec2fleet.fleet.deploy_checkpoint`` in the background."""

    def __init__(self, **args):
        super().__init__("ec2fleet.fleet.deploy_checkpoint", {**LOCK_ARGS, **args})

    def result(self, timeout=120):
        return super().result(timeout)


def resume_playbook(*extra):
    """The operator's command as docs/deploy.md gives it (env and region from -e: no fleet inventory here)."""
    cmd = ["ansible-playbook", "playbooks/deploy-resume.yml", "-e", "deploy_env=prod", "-e", "deploy_region=us-east-1"]
    for value in extra:
        cmd += ["-e", value]
    done = subprocess.run(cmd, cwd=REPO, env={**os.environ, **JSON_ENV}, capture_output=True, text=True,
                          timeout=180)
    try:
        tasks = json.loads(done.stdout)["plays"][0]["tasks"]
    except (ValueError, KeyError, IndexError) as exc:
        raise AssertionError(f"no result (rc {done.returncode}):\n{done.stdout}\n{done.stderr}") from exc
    return next(t["hosts"]["localhost"] for t in tasks if t["task"]["name"].startswith("Give the answer"))


def answer_in_a_thread(*extra):
    """An operator on another controller: waits until the deploy is paused, then answers."""
    found = {}

    def operator():
        if wait_for(paused, 60):
            found["paused_seen"] = time.monotonic()
            found["result"] = resume_playbook(*extra)
            found["answered"] = time.monotonic()

    thread = threading.Thread(target=operator)
    thread.start()
    return thread, found


def test_an_operator_resumes_the_paused_deploy_from_another_controller(aws, deploy):
    waiting = Waiting(run_id=deploy, **AT, timeout=120, poll_interval=1)
    thread, operator = answer_in_a_thread("deploy_resume_reason='5xx and p99 flat'")
    result = waiting.result()
    thread.join(60)
    assert operator["result"]["changed"] is True, operator["result"]
    assert operator["result"]["msg"].startswith(f"checkpoint 1 (10%, after batch 2) of run {deploy} (2.0.0, ")
    assert result.get("failed") is not True, result
    assert (result["answer"], result["proceed"], result["stop"], result["changed"]) == ("resumed", True, None, True)
    entry = result["checkpoint"]
    assert {k: entry[k] for k in AT} == AT and entry["reason"] == "5xx and p99 flat"
    assert entry["answered_by"].endswith("@" + socket.gethostname())
    assert when(entry["paused_at"]) <= when(entry["answered_at"])
    # It went on within a poll of the answer.
    assert result["waited"] < 60 and time.monotonic() - operator["answered"] < 30
    # The lock still holds everything else, its parts read back whole.
    lock = record()
    assert lock["run_id"] == deploy and lock["data"]["standby"] == STANDBY
    assert lock["data"]["suspended"] == {"web": ["AZRebalance"]} and lock["data"]["checkpoint"] == entry
    # The same answer again changes nothing; the deploy's task retried returns the answer at once.
    again = resume_playbook("deploy_resume_reason='again'")
    assert again["changed"] is False and again["checkpoint"]["reason"] == "5xx and p99 flat"
    retried = run_module("ec2fleet.fleet.deploy_checkpoint", {**LOCK_ARGS, "run_id": deploy, **AT})
    assert (retried["answer"], retried["changed"]) == ("resumed", False)


def test_an_operator_aborts_and_the_deploy_gets_the_stop_for_its_rollback(aws, deploy):
    waiting = Waiting(run_id=deploy, **AT, timeout=120, poll_interval=1)
    thread, operator = answer_in_a_thread("deploy_resume=abort", "deploy_resume_checkpoint=1",
                                          f"deploy_resume_run={deploy}", "deploy_resume_reason='5xx doubled'")
    result = waiting.result()
    thread.join(60)
    assert operator["result"]["changed"] is True and operator["result"]["answer"] == "aborted"
    assert (result["answer"], result["proceed"]) == ("aborted", False)
    by = result["checkpoint"]["answered_by"]
    assert result["stop"] == {"kind": "abort", "reason": f"checkpoint 1 (10%, after batch 2) aborted by {by}: 5xx doubled",
                              "fired_at": result["checkpoint"]["answered_at"]}
    # Too late to resume what was aborted.
    late = resume_playbook()
    assert late["failed"] is True and "checkpoint 1 (10%, after batch 2) was aborted by" in late["msg"]


def test_nobody_answers_the_wait_times_out_with_the_lock_kept_alive(aws):
    proc = subprocess.Popen(["sleep", "300"])
    try:
        run_id = run_module("ec2fleet.fleet.deploy_lock", {**LOCK_ARGS, "version": "2.0.0", "pid": proc.pid,
                                                            "ttl": 4})["run_id"]
        first = when(record()["expires_at"])
        seen = []
        waiting = Waiting(run_id=run_id, **AT, timeout=9, poll_interval=1, ttl=4)
        # Meanwhile the lock is kept alive: no deploy heartbeat runs here, only the wait.
        while waiting.proc.poll() is None:
            seen.append(when(record()["expires_at"]))
            time.sleep(1)
        result = waiting.result()
    finally:
        proc.kill()
        proc.wait()
    assert (result["answer"], result["proceed"]) == ("timed_out", False)
    assert result["stop"]["kind"] == "timeout"
    assert result["stop"]["reason"] == "nobody resumed checkpoint 1 (10%, after batch 2) within 9 s"
    assert result["waited"] >= 9
    assert max(seen) >= first + timedelta(seconds=5)
    # Extended to the end of the 9 s wait (every second, ttl 4: the last push at 8 s or later), not
    # only early on. Not "still held now": with a ttl of 4 s that races the test on a loaded machine.
    assert when(record()["expires_at"]) >= first + timedelta(seconds=6)
    # The deploy goes on (its heartbeat keeps the lock); an answer now comes too late.
    assert lock_store.extend(store(), run_id, 600)[0] == "extended"
    late = resume_playbook()
    assert late["failed"] is True and "checkpoint 1 (10%, after batch 2) was timed out" in late["msg"]


# --- refusals, check mode, the pure parts ---------------------------------------------------------

class Module:
    """What the module's functions read of an AnsibleModule."""

    def __init__(self, check_mode=False, **params):
        self.check_mode = check_mode
        self.params = {name: rule.get("default") for name, rule in checkpoint.ARGUMENT_SPEC.items()}
        self.params.update(LOCK_ARGS, **params)


def store():
    return LockStore(utils.AwsCalls({}), NAME, "Standard")


def put(run_id="their-run", expires=600, entry=None):
    value = {"owner": "alice@ctl", "controller": "ctl", "pid": 1, "version": "2.0.0", "run_id": run_id,
             "started_at": "2026-12-01T05:00:00Z",
             "expires_at": (datetime.now(UTC) + timedelta(seconds=expires)).strftime("%Y-%m-%dT%H:%M:%SZ"),
             "data": {"standby": ["i-1"], **({"checkpoint": entry} if entry else {})}}
    client("ssm").put_parameter(Name=NAME, Value=json.dumps(value), Type="String", Overwrite=True)
    return value


def answer(state="resumed", check=False, **params):
    try:
        return checkpoint.answer(Module(check_mode=check, state=state, **params), store())
    except checkpoint.DeployError as exc:
        return {"failed": True, "msg": str(exc)}


PAUSED = {**AT, "paused_at": "2026-12-01T06:00:00Z", "state": "paused", "answered_by": None, "answered_at": None,
          "reason": ""}


@pytest.mark.parametrize(("setup", "params", "message"), [
    (None, {}, f"no deploy holds {NAME}: nothing is paused at a checkpoint"),
    ({}, {}, "run their-run: it is not paused at a checkpoint"),
    ({"entry": PAUSED, "expires": -5}, {}, "its lock has expired, so its run is gone and nothing waits at a checkpoint"),
    ({"entry": PAUSED}, {"run_id": "other-run"}, ", not by run other-run"),
    ({"entry": PAUSED}, {"number": 2}, "it is at checkpoint 1 (10%, after batch 2) (paused), not checkpoint 2"),
    ({"entry": dict(PAUSED, state="resumed", answered_by="bob@ctl", answered_at="2026-12-01T06:01:00Z")},
     {"state": "aborted"}, "checkpoint 1 (10%, after batch 2) was resumed by bob@ctl at 2026-12-01T06:01:00Z"),
], ids=["no-lock", "not-paused", "expired", "other-run", "other-checkpoint", "answered-otherwise"])
def test_an_answer_that_fits_no_paused_run_is_refused_in_one_line(aws, setup, params, message):
    if setup is not None:
        before = put(**setup)
    result = answer(**{"state": "resumed", **params})
    assert result["failed"] is True and message in result["msg"] and "\n" not in result["msg"]
    if setup is not None:
        assert json.loads(client("ssm").get_parameter(Name=NAME)["Parameter"]["Value"]) == before


def test_check_mode_writes_nothing_on_either_side(aws):
    before = put(entry=PAUSED)
    result = answer(check=True, reason="looks fine")
    assert result["changed"] is True and result["checkpoint"]["state"] == "resumed"
    assert json.loads(client("ssm").get_parameter(Name=NAME)["Parameter"]["Value"]) == before
    waited = checkpoint.wait(Module(check_mode=True, run_id="their-run", number=2, batch=5), store())
    assert (waited["answer"], waited["proceed"], waited["changed"]) == ("resumed", True, True)
    assert waited["msg"] == "would pause at checkpoint 2 (after batch 5) and wait up to 3600 s for an operator"
    assert json.loads(client("ssm").get_parameter(Name=NAME)["Parameter"]["Value"]) == before


def test_the_deploy_pauses_only_in_its_own_lock(aws):
    put(run_id="their-run")
    with pytest.raises(checkpoint.DeployError, match=r"is held by alice@ctl .*, not by run my-run; not pausing"):
        checkpoint.wait(Module(run_id="my-run", **AT), store())
    client("ssm").delete_parameter(Name=NAME)
    with pytest.raises(checkpoint.DeployError, match="is not held by anyone: run my-run cannot pause in it"):
        checkpoint.wait(Module(run_id="my-run", **AT), store())
    bad = run_module("ec2fleet.fleet.deploy_checkpoint", {**LOCK_ARGS, "run_id": "my-run", "number": 1,
                                                          "timeout": 5, "poll_interval": 5})
    assert bad["failed"] is True and bad["msg"] == ("poll_interval must be positive and less than timeout (5 s), "
                                                    "got 5")
    missing = run_module("ec2fleet.fleet.deploy_checkpoint", {**LOCK_ARGS, "number": 1})
    assert missing["failed"] is True and "state=paused needs run_id" in missing["msg"]


def test_an_answer_at_the_last_moment_wins_over_the_timeout(aws, monkeypatch):
    """The operator answers (from another controller: no shared local mutex) while the deploy's
    wait records its timeout: the history check sees the answer, and the answer is taken."""
    @contextlib.contextmanager
    def no_mutex(_key, timeout=0):
        yield False

    monkeypatch.setattr(lock_store, "local_mutex", no_mutex)
    put(run_id="r1", entry=PAUSED)
    times = iter([0.0])

    def clock():  # first read when the timeout is written: the operator's answer lands right then
        if not clock.answered:
            clock.answered = True
            assert answer(reason="just in time")["changed"] is True
        return datetime.now(UTC)

    clock.answered = False
    result = checkpoint.wait(Module(run_id="r1", **AT, timeout=1, poll_interval=1), store(), sleep=lambda _s: None,
                             monotonic=lambda: next(times, 5.0), clock=clock)
    assert (result["answer"], result["proceed"], result["checkpoint"]["reason"]) == ("resumed", True, "just in time")
    assert record()["data"]["checkpoint"]["state"] == "resumed"

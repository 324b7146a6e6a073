"""fleet_deploy_lock against the emulator (SSM Parameter Store): acquire, refuse with the
holder's details, take over expired and stale locks returning the previous value, update, release,
check mode; plus the pure decisions and the takeover race; and data larger than the tier's limit,
kept in continuation parameters (round trips with 1,000 and 5,000 instance ids, crash consistency).
The heartbeat: tests/test_deploy_lock_heartbeat.py."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pytest
from ansible_collections.ec2fleet.fleet.plugins.module_utils import aws as utils
from ansible_collections.ec2fleet.fleet.plugins.module_utils import lock_store
from ansible_collections.ec2fleet.fleet.plugins.modules import deploy_lock
from deploy_support import client, run_module, run_tasks

pytestmark = pytest.mark.emulator

NAME = "/sampleapp/prod/deploy-lock"
LOCK_ARGS = {"app": "sampleapp", "env": "prod"}


def stored():
    try:
        return json.loads(client("ssm").get_parameter(Name=NAME)["Parameter"]["Value"])
    except client("ssm").exceptions.ParameterNotFound:
        return None


def put_lock(**fields):
    value = {"owner": "alice@other-controller", "controller": "other-controller", "pid": 1234,
             "version": "1.9.0", "started_at": "2026-01-01T10:00:00Z", "run_id": "their-run", "data": {}}
    value.update(fields)
    client("ssm").put_parameter(Name=NAME, Value=json.dumps(value), Type="String", Overwrite=True)
    return value


def all_parameters():
    """{name: (version, value)} of every parameter in the emulator."""
    ssm = client("ssm")
    names = [p["Name"] for page in ssm.get_paginator("describe_parameters").paginate() for p in page["Parameters"]]
    found = {}
    for name in names:
        parameter = ssm.get_parameter(Name=name)["Parameter"]
        found[name] = (parameter["Version"], parameter["Value"])
    return found


def iso(delta_seconds):
    moment = datetime.now(UTC) + timedelta(seconds=delta_seconds)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def test_one_run_acquires_updates_and_releases_and_a_second_run_is_refused(aws):
    results = run_tasks([
        {"name": "acquire", "ec2fleet.fleet.deploy_lock": {**LOCK_ARGS, "version": "2.0.0", "ttl": 600,
                                                  "data": {"asg": "web"}}, "register": "lock"},
        {"name": "acquire again, same run", "ec2fleet.fleet.deploy_lock": {**LOCK_ARGS, "run_id": "{{ lock.run_id }}"}},
        {"name": "record standby", "ec2fleet.fleet.deploy_lock": {**LOCK_ARGS, "state": "updated", "ttl": 900,
                                                         "run_id": "{{ lock.run_id }}",
                                                         "data": {"standby": ["i-1"]}}},
        {"name": "a second deploy while this one runs", "ec2fleet.fleet.deploy_lock": {**LOCK_ARGS, "version": "3.0.0"},
         "ignore_errors": True},
        {"name": "release", "ec2fleet.fleet.deploy_lock": {**LOCK_ARGS, "state": "released", "run_id": "{{ lock.run_id }}"}},
        {"name": "release again", "ec2fleet.fleet.deploy_lock": {**LOCK_ARGS, "state": "released", "run_id": "{{ lock.run_id }}"}},
    ])
    acquired, again, updated, second, released, released_again = results
    assert acquired["changed"] is True and acquired["name"] == NAME
    lock = acquired["lock"]
    assert lock["owner"].endswith("@" + socket.gethostname())
    assert lock["controller"] == socket.gethostname() and lock["version"] == "2.0.0" and lock["ttl"] == 600
    assert lock["data"] == {"asg": "web"} and len(lock["run_id"]) == 32
    assert again["changed"] is False and "already held by this run" in again["msg"]
    assert updated["changed"] is True
    assert updated["lock"]["data"] == {"asg": "web", "standby": ["i-1"]}
    assert updated["lock"]["expires_at"] > lock["expires_at"]  # extended by the new ttl
    # The playbook process is alive on this same controller: the lock is not stale.
    assert second["failed"] is True
    assert second["msg"].startswith(f"deploy lock {NAME} is held by {lock['owner']} (pid {lock['pid']} on ")
    assert "deploying version 2.0.0" in second["msg"] and f"expires {updated['lock']['expires_at']}" in second["msg"]
    assert "\n" not in second["msg"]
    assert second["holder"]["run_id"] == lock["run_id"]
    assert released["changed"] is True and released_again["changed"] is False
    assert stored() is None


def test_lock_of_a_killed_run_is_taken_over_with_its_data(aws):
    # The ad-hoc `ansible` process that takes the lock exits right after: like a killed playbook.
    first = run_module("ec2fleet.fleet.deploy_lock", {**LOCK_ARGS, "version": "2.0.0",
                                             "data": {"suspended": {"web": ["AZRebalance"]}, "standby": ["i-1"]}})
    assert first["changed"] is True
    second = run_module("ec2fleet.fleet.deploy_lock", {**LOCK_ARGS, "version": "2.0.0"})
    assert second["changed"] is True
    assert second["recovered"]["run_id"] == first["run_id"]
    assert second["recovered"]["data"] == {"suspended": {"web": ["AZRebalance"]}, "standby": ["i-1"]}
    assert "took over deploy lock" in second["msg"] and "no longer running" in second["msg"]
    assert stored()["run_id"] == second["run_id"]


def test_expired_lock_of_another_controller_is_taken_over(aws):
    old = put_lock(expires_at=iso(-5), data={"standby": ["i-9"]})
    result = run_module("ec2fleet.fleet.deploy_lock", {**LOCK_ARGS, "version": "2.0.0"})
    assert result["changed"] is True
    assert result["recovered"] == old
    assert f"expired at {old['expires_at']}" in result["msg"]
    assert stored()["run_id"] == result["run_id"]


@pytest.mark.parametrize("check", [False, True], ids=["run", "check-mode"])
def test_live_lock_of_another_controller_is_refused_with_details(aws, check):
    holder = put_lock(expires_at=iso(1800))
    result = run_module("ec2fleet.fleet.deploy_lock", {**LOCK_ARGS, "version": "2.0.0"}, check=check)
    assert result["failed"] is True
    assert result["msg"] == (
        f"deploy lock {NAME} is held by alice@other-controller (pid 1234 on other-controller), deploying "
        f"version 1.9.0, started 2026-01-01T10:00:00Z, expires {holder['expires_at']}, run their-run; "
        f"refusing to deploy (it is held by a live run)")
    assert stored() == holder


def test_force_takes_over_and_force_releases(aws):
    holder = put_lock(expires_at=iso(1800))
    refused = run_module("ec2fleet.fleet.deploy_lock", {**LOCK_ARGS, "state": "released", "run_id": "mine"})
    assert refused["failed"] is True and "not releasing it" in refused["msg"]
    taken = run_module("ec2fleet.fleet.deploy_lock", {**LOCK_ARGS, "force": True})
    assert taken["changed"] is True and taken["recovered"] == holder and "(forced)" in taken["msg"]
    put_lock(expires_at=iso(1800))
    released = run_module("ec2fleet.fleet.deploy_lock", {**LOCK_ARGS, "state": "released", "force": True})
    assert released["changed"] is True and "(forced)" in released["msg"]
    assert stored() is None


def test_takeover_of_a_named_run_from_any_controller(aws):
    # An operator recovering a stopped deploy names its run: taken over even though it looks live.
    holder = put_lock(expires_at=iso(1800), data={"standby": ["i-1"]})
    wrong = run_module("ec2fleet.fleet.deploy_lock", {**LOCK_ARGS, "takeover_run_id": "another-run"})
    assert wrong["failed"] is True and wrong["msg"].endswith("; it is not run another-run, refusing to take it over")
    assert stored() == holder
    taken = run_module("ec2fleet.fleet.deploy_lock", {**LOCK_ARGS, "takeover_run_id": "their-run"})
    assert taken["changed"] is True and taken["recovered"] == holder
    assert "(run their-run named by the operator)" in taken["msg"]
    assert stored()["run_id"] == taken["run_id"] != "their-run"


def test_check_mode_changes_nothing(aws):
    result = run_module("ec2fleet.fleet.deploy_lock", {"name": "/custom/lock", "version": "2.0.0"}, check=True)
    assert result["changed"] is True and result["msg"] == "would acquire deploy lock /custom/lock"
    assert result["lock"]["version"] == "2.0.0"
    assert client("ssm").describe_parameters()["Parameters"] == []


def test_update_by_a_run_that_does_not_hold_it_fails(aws):
    put_lock(expires_at=iso(1800))
    other, missing = run_tasks([
        {"name": "not ours", "ec2fleet.fleet.deploy_lock": {**LOCK_ARGS, "state": "updated", "run_id": "mine", "data": {"x": 1}},
         "ignore_errors": True},
        {"name": "nobody's", "ec2fleet.fleet.deploy_lock": {"name": "/nothing/here", "state": "updated", "run_id": "mine"},
         "ignore_errors": True},
    ])
    assert other["failed"] is True and "not by run mine; not updating it" in other["msg"]
    assert missing["failed"] is True and "is not held by anyone" in missing["msg"]
    assert "x" not in stored()["data"]


def test_value_too_large_even_for_continuation_parameters_fails_clearly_writing_nothing(aws):
    # ~30,000 instance ids need more parts than the lock's value can pin in the Standard tier; many
    # small keys cannot be moved out at all. Both fail before any write.
    huge = {"standby": [f"i-{n:017x}" for n in range(30000)]}
    small_keys = {f"group-{n:04d}": n for n in range(400)}
    for data in (huge, small_keys):
        (result,) = run_tasks([{"name": "too large", "ec2fleet.fleet.deploy_lock": {**LOCK_ARGS, "data": data},
                                "ignore_errors": True}])
        assert result["failed"] is True
        assert "over the 4096-byte limit of the Standard tier" in result["msg"]
        assert all_parameters() == {}


def test_bad_arguments_are_refused(aws):
    results = run_tasks([{"name": f"case {n}", "ec2fleet.fleet.deploy_lock": args, "ignore_errors": True} for n, args in
                         enumerate([{"version": "1"}, {**LOCK_ARGS, "ttl": 0}, {**LOCK_ARGS, "state": "released"}])])
    assert [r["failed"] for r in results] == [True] * 3
    assert "one of the following is required: name, app" in results[0]["msg"]
    assert "ttl must be a positive" in results[1]["msg"]
    assert "needs the run_id" in results[2]["msg"]


# --- pure logic and the takeover race, in this process ------------------------------------------

@pytest.fixture(scope="module")
def lockmod():
    return deploy_lock


NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize("holder, alive, verdict", [
    ({"run_id": "r1", "expires_at": "2026-11-23T13:00:00Z"}, True, "ours"),
    ({"run_id": "r2", "expires_at": "2026-11-23T11:59:59Z", "controller": "elsewhere"}, True, "expired"),
    ({"run_id": "r2", "expires_at": "2026-11-23T12:00:00Z", "controller": "here", "pid": 5}, True, "expired"),
    ({"run_id": "r2", "expires_at": "2026-11-23T13:00:00Z", "controller": "here", "pid": 5}, False, "stale"),
    ({"run_id": "r2", "expires_at": "2026-11-23T13:00:00Z", "controller": "here", "pid": 5}, True, "held"),
    # A dead PID on ANOTHER controller says nothing: that process is not ours to see.
    ({"run_id": "r2", "expires_at": "2026-11-23T13:00:00Z", "controller": "elsewhere", "pid": 5}, False, "held"),
    ({"run_id": "r2", "controller": "elsewhere"}, False, "held"),
    ("not json", True, "held"),
    # Same host name, another machine (two laptops called "localhost"): not ours to judge.
    ({"run_id": "r2", "expires_at": "2026-11-23T13:00:00Z", "controller": "here", "machine_id": "other",
      "pid": 5}, False, "held"),
    ({"run_id": "r2", "expires_at": "2026-11-23T13:00:00Z", "controller": "here", "machine_id": "m1",
      "pid": 5}, False, "stale"),
])
def test_judge(lockmod, holder, alive, verdict):
    assert lockmod.judge(holder, "r1", "here", NOW, alive=lambda pid, started: alive, machine="m1")[0] == verdict


def test_process_alive_sees_dead_and_reused_pids(lockmod):
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    assert lockmod.process_alive(os.getpid(), lockmod.process_start(os.getpid())) is True
    assert lockmod.process_alive(child.pid) is False
    # Same PID, another start time: a reused PID, not the holder.
    assert lockmod.process_alive(os.getpid(), "1") is False
    assert lockmod.process_alive("garbage") is False


def test_controller_process_is_the_outermost_ansible(aws):
    """Run under ansible-playbook, the recorded pid is the playbook process itself (not one of its
    worker forks, which share its command line but die after each task)."""
    results, playbook_pid = run_tasks([{"name": "acquire", "ec2fleet.fleet.deploy_lock": LOCK_ARGS}], with_pid=True)
    assert results[0]["lock"]["pid"] == playbook_pid


class _FakeModule:
    """Just the attributes acquire() reads: this test drives the real SSM calls directly."""

    def __init__(self, **params):
        self.params = {"run_id": None, "version": "2.0.0", "ttl": 600, "data": {}, "owner": None,
                       "pid": None, "force": False, **params}
        self.check_mode = False

    def fail_json(self, **kwargs):
        raise AssertionError(kwargs)


def test_takeover_race_the_first_writer_wins(aws, lockmod):
    """Two runs take over the same expired lock: another run's write lands between our read and
    our write (a real write to the emulator); we detect the gap, put the winner's value back and fail."""
    put_lock(expires_at=iso(-60))
    winner = {"owner": "bob@c2", "controller": "c2", "pid": 7, "run_id": "winner", "expires_at": iso(600)}

    class RacingStore(lockmod.LockStore):
        def overwrite(self, lock):
            client("ssm").put_parameter(Name=NAME, Value=json.dumps(winner), Type="String", Overwrite=True)
            return super().overwrite(lock)

    store = RacingStore(utils.AwsCalls({}), NAME, "Standard")
    with pytest.raises(utils.FleetAWSError, match="another run took it over at the same moment"):
        lockmod.acquire(_FakeModule(), store, datetime.now(UTC))
    assert stored() == winner


def test_takeover_race_with_a_release_and_fresh_lock_in_between(aws, lockmod):
    """Between our read of the expired lock and our write, its holder releases it and a third run
    creates a fresh one (version numbering restarts): our write must not steal it."""
    put_lock(expires_at=iso(-60))
    put_lock(expires_at=iso(-30))  # version 2, so a restart at 1 is visible
    fresh = {"owner": "carol@c3", "controller": "c3", "pid": 8, "run_id": "fresh", "expires_at": iso(600)}

    class RacingStore(lockmod.LockStore):
        def overwrite(self, lock):
            ssm = client("ssm")
            ssm.delete_parameter(Name=NAME)
            ssm.put_parameter(Name=NAME, Value=json.dumps(fresh), Type="String", Overwrite=False)
            return super().overwrite(lock)

    store = RacingStore(utils.AwsCalls({}), NAME, "Standard")
    with pytest.raises(utils.FleetAWSError, match="another run took it over at the same moment"):
        lockmod.acquire(_FakeModule(), store, datetime.now(UTC))
    assert stored() == fresh


# --- data larger than the tier's limit: continuation parameters ----------------------------------

def ids(count, start=0):
    return [f"i-{n:017x}" for n in range(start, start + count)]


def test_split_lock_cuts_the_largest_values_into_parts_that_fit(lockmod):
    lock = {"run_id": "r", "expires_at": "2026-01-01T00:00:00Z",
            "data": {"standby": ids(1000), "capacity": {"web": {"surge": ids(300, 5000)}}, "suspended": {"web": ["x"]}}}
    main, moved = lock_store.split_lock(lock, 4096)
    assert [key for key, _chunks in moved] == ["capacity", "standby"]  # by name when nothing is stored yet
    for key, chunks in moved:
        assert all(len(chunk.encode()) <= 4096 for chunk in chunks)
        assert json.loads("".join(chunks)) == lock["data"][key]
    assert main["data"] == {"suspended": {"web": ["x"]}}
    # Values already in parts keep their numbers: their order comes first.
    _main, moved = lock_store.split_lock(lock, 4096, order=["standby"])
    assert [key for key, _chunks in moved] == ["standby", "capacity"]
    # Only what is needed moves: a lock that fits stays whole; a small surge stays in the value.
    assert lock_store.split_lock({"data": {"standby": ids(10)}}, 4096) == ({"data": {"standby": ids(10)}}, [])
    main, moved = lock_store.split_lock(dict(lock, data={**lock["data"], "capacity": {"web": {"surge": ids(3)}}}), 4096)
    assert [key for key, _chunks in moved] == ["standby"] and "capacity" in main["data"]
    assert lock_store.split_lock({"data": {f"k{n}": n for n in range(1000)}}, 4096) is None


@pytest.mark.parametrize("count", [1000, 5000])
def test_large_data_round_trip_acquire_update_recover_release(aws, count):
    standby = ids(count)
    data = {"suspended": {"web": ["AZRebalance", "ReplaceUnhealthy"]},
            "capacity": {"web": {"original": {"min_size": 2, "max_size": 9}}}, "standby": standby}
    update = {**LOCK_ARGS, "state": "updated", "run_id": "{{ lock.run_id }}", "ttl": 600}
    acquired, first, same, grown = run_tasks([
        {"name": "acquire", "ec2fleet.fleet.deploy_lock": {**LOCK_ARGS, "version": "2.0.0"}, "register": "lock"},
        {"name": "record a large batch", "ec2fleet.fleet.deploy_lock": {**update, "data": data}},
        {"name": "the same batch, another key changed",
         "ec2fleet.fleet.deploy_lock": {**update, "data": {**data, "suspended": {"web": ["AZRebalance"]}}}},
        {"name": "one more instance",
         "ec2fleet.fleet.deploy_lock": {**update, "data": {"standby": [*standby, "i-zz"]}}},
    ], timeout=600)
    run_id = acquired["run_id"]
    assert first["lock"]["data"] == data and first["lock"]["run_id"] == run_id
    assert len(first["parts"]) == first["parts_written"] >= count * 22 // 4096
    assert first["parts"] == [f"{NAME}/part-{n}" for n in range(1, len(first["parts"]) + 1)]
    # Only the parts whose content changed are written again.
    assert same["parts_written"] == 0 and same["lock"]["data"]["standby"] == standby
    assert 1 <= grown["parts_written"] <= 2
    expected = {**data, "suspended": {"web": ["AZRebalance"]}, "standby": [*standby, "i-zz"]}
    assert grown["lock"]["data"] == expected

    stored_now = all_parameters()
    _main_version, main_value = stored_now[NAME]
    assert len(main_value.encode()) < 4096
    main = json.loads(main_value)
    assert "standby" not in main["data"] and main["data"]["suspended"] == {"web": ["AZRebalance"]}
    assert [entry[0] for entry in main["parts"]["standby"]] == list(range(1, len(grown["parts"]) + 1))
    assert set(stored_now) == {NAME, *grown["parts"]}
    assert all(len(value.encode()) <= 4096 for _version, value in stored_now.values())

    # The playbook has ended: its lock is stale, and a new run takes it over with all its data.
    taken = run_module("ec2fleet.fleet.deploy_lock", {**LOCK_ARGS, "version": "2.0.1"})
    assert taken["changed"] is True and taken["recovered"]["run_id"] == run_id
    assert taken["recovered"]["data"] == expected
    assert "parts" not in taken["recovered"] and "parts" not in taken["lock"]
    assert set(all_parameters()) == {NAME}  # the parts of the run taken over are deleted

    second = taken["run_id"]
    results = run_tasks([
        {"name": "record", "ec2fleet.fleet.deploy_lock": {**LOCK_ARGS, "state": "updated", "run_id": second,
                                                           "data": {"standby": standby}}},
        {"name": "release", "ec2fleet.fleet.deploy_lock": {**LOCK_ARGS, "state": "released", "run_id": second}},
    ], timeout=600)
    assert results[0]["lock"]["data"] == {"standby": standby} and results[1]["changed"] is True
    assert all_parameters() == {}


def test_check_mode_writes_no_part(aws):
    standby = ids(1000)
    results = run_tasks([
        {"name": "acquire", "ec2fleet.fleet.deploy_lock": {**LOCK_ARGS, "data": {"standby": standby}}},
    ], check=True)
    assert results[0]["changed"] is True and results[0]["lock"]["data"] == {"standby": standby}
    assert all_parameters() == {}
    acquired = run_module("ec2fleet.fleet.deploy_lock", {**LOCK_ARGS, "run_id": "mine", "data": {"standby": ids(500)}})
    assert acquired["changed"] is True and acquired["parts"]
    before = all_parameters()
    results = run_tasks([
        {"name": "update", "ec2fleet.fleet.deploy_lock": {**LOCK_ARGS, "state": "updated", "run_id": "mine",
                                                           "data": {"standby": standby}}},
        {"name": "release", "ec2fleet.fleet.deploy_lock": {**LOCK_ARGS, "state": "released", "run_id": "mine"}},
    ], check=True)
    assert results[0]["lock"]["data"] == {"standby": standby} and results[1]["changed"] is True
    assert all_parameters() == before


def test_acquire_with_large_data_and_forced_release_give_it_back(aws):
    data = {"standby": ids(1000)}
    acquired = run_module("ec2fleet.fleet.deploy_lock", {**LOCK_ARGS, "data": data, "ttl": 600})
    assert acquired["changed"] is True and acquired["lock"]["data"] == data and len(acquired["parts"]) == 6
    assert len(all_parameters()[NAME][1]) < 4096
    refused = run_module("ec2fleet.fleet.deploy_lock", {**LOCK_ARGS, "state": "released", "run_id": "other"})
    assert refused["failed"] is True and "not releasing it" in refused["msg"]
    forced = run_module("ec2fleet.fleet.deploy_lock", {**LOCK_ARGS, "state": "released", "force": True})
    assert forced["changed"] is True and forced["recovered"]["data"] == data
    assert all_parameters() == {}


def _store(lockmod, cls=None):
    return (cls or lockmod.LockStore)(utils.AwsCalls({}), NAME, "Standard")


def _update(lockmod, store, run_id, data):
    module = _FakeModule(run_id=run_id, data=data)
    return lockmod.update(module, store, datetime.now(UTC))


def test_a_crash_between_the_parts_and_the_value_leaves_the_old_data_readable(aws, lockmod):
    """The parts are written first: a run killed before its value is written leaves the old value,
    which pins the old versions of its parts, so it still reads back as it was."""
    old = {"standby": ids(1000)}
    put_lock(run_id="mine", expires_at=iso(600))
    _update(lockmod, _store(lockmod), "mine", old)

    class Crash(Exception):
        pass

    class CrashingStore(lockmod.LockStore):
        def write_text(self, text):
            raise Crash

    with pytest.raises(Crash):
        _update(lockmod, _store(lockmod, CrashingStore), "mine", {"standby": ids(1000, 7)})
    latest = {name: value for name, (_version, value) in all_parameters().items()}
    assert json.loads("".join(latest[f"{NAME}/part-{n}"] for n in range(1, 7))) == ids(1000, 7)  # new parts...
    store = _store(lockmod)
    holder, _version = store.read()
    assert store.resolve(holder) == ({**put_lock_fields(holder), "data": old}, [])  # ...the old value still whole
    # The next update (or a takeover) goes on from there; the release leaves nothing behind.
    assert _update(lockmod, store, "mine", {"standby": ids(20)})["lock"]["data"] == {"standby": ids(20)}
    assert set(all_parameters()) == {NAME}
    assert lockmod.release(_FakeModule(run_id="mine"), _store(lockmod))["changed"] is True
    assert all_parameters() == {}


def put_lock_fields(holder):
    return {k: v for k, v in holder.items() if k not in ("parts", "data")}


def test_an_update_that_changes_nothing_costs_one_read_one_write_and_one_check(aws, lockmod):
    put_lock(run_id="mine", expires_at=iso(600))
    _update(lockmod, _store(lockmod), "mine", {"standby": ids(5000), "suspended": {"web": ["AZRebalance"]}})
    store = _store(lockmod)
    result = _update(lockmod, store, "mine", {"standby": ids(5000), "suspended": {"web": []}})
    assert result["parts_written"] == 0 and result["reapplied"] == 0
    assert store.calls == {"get_parameter": 2, "put_parameter": 1}  # read, write, the version before ours


def test_release_deletes_parts_an_interrupted_run_left(aws, lockmod):
    """A run killed while releasing or updating leaves parts numbered after the last one pinned:
    the next release finds them (numbered without gaps) and deletes them."""
    put_lock(run_id="mine", expires_at=iso(600))
    _update(lockmod, _store(lockmod), "mine", {"standby": ids(1000)})
    for n in range(7, 10):  # beyond the 6 pinned
        client("ssm").put_parameter(Name=f"{NAME}/part-{n}", Value="orphan", Type="String")
    assert len(all_parameters()) == 10
    lockmod.release(_FakeModule(run_id="mine"), _store(lockmod))
    assert all_parameters() == {}


def test_a_lock_whose_parts_cannot_be_read_is_taken_over_only_with_force(aws, lockmod):
    put_lock(run_id="theirs", expires_at=iso(600))
    _update(lockmod, _store(lockmod), "theirs", {"standby": ids(1000), "suspended": {"web": ["AZRebalance"]}})
    ssm = client("ssm")
    value = json.loads(ssm.get_parameter(Name=NAME)["Parameter"]["Value"])
    value["expires_at"] = iso(-5)
    ssm.put_parameter(Name=NAME, Value=json.dumps(value), Type="String", Overwrite=True)
    ssm.delete_parameter(Name=f"{NAME}/part-3")
    refused = run_module("ec2fleet.fleet.deploy_lock", LOCK_ARGS)
    assert refused["failed"] is True and "the data of standby in its continuation parameters" in refused["msg"]
    assert "force: true" in refused["msg"]
    forced = run_module("ec2fleet.fleet.deploy_lock", {**LOCK_ARGS, "force": True})
    assert forced["changed"] is True and forced["recovered"]["data"] == {"suspended": {"web": ["AZRebalance"]}}
    assert any("could not be read back" in w for w in forced.get("warnings", []))
    assert set(all_parameters()) == {NAME}

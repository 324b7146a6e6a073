"""The rollout's bookkeeping (plugins/module_utils/deploy_rollout.py): the queue with a coordinator
per batch, a batch's outcome with lost hosts, the lock's record of hosts out of service, and the
whole-deploy rollback (which batches to switch back, and their accounting)."""

from __future__ import annotations

import pytest
from ansible_collections.ec2fleet.fleet.plugins.module_utils import deploy_rollout as rollout
from deploy_support import run_tasks


def result(host, status, iid=None, out=False, **extra):
    return {"host": host, "instance_id": iid or f"i-{host}", "status": status, "out_of_service": out, **extra}


# -- queue -----------------------------------------------------------------------------------

def test_each_batch_is_led_by_its_coordinator_and_serial_counts_it():
    plan = rollout.rollout_queue([["web-1"], ["web-2", "web-3"]])
    assert [(q["name"], q["batch"], q["coordinator"]) for q in plan["queue"]] == [
        ("deploy-batch-1", 1, True), ("web-1", 1, False),
        ("deploy-batch-2", 2, True), ("web-2", 2, False), ("web-3", 2, False),
    ]
    assert plan["serial"] == [2, 3]
    assert rollout.is_coordinator("deploy-batch-2") and not rollout.is_coordinator("web-2")


def test_a_sweep_continues_the_numbering():
    plan = rollout.rollout_queue([["new-1", "new-2"]], first=4)
    assert [(q["name"], q["batch"]) for q in plan["queue"]] == [("deploy-batch-4", 4), ("new-1", 4), ("new-2", 4)]
    assert plan["serial"] == [3]


@pytest.mark.parametrize("batches", ["web-1", [[]], [["a"], "b"]])
def test_bad_batches_are_refused(batches):
    with pytest.raises(ValueError):
        rollout.rollout_queue(batches)


# -- batch outcome -----------------------------------------------------------------------------
# The coordinator takes the batch out (service "out"), the hosts activate or switch back, the
# coordinator puts them back (service "in") and accounts. Entries as service_state returns them.

def entry(ok=True, state=None, error="", **waits):
    return {"ok": ok, "error": error, "lifecycle_state": state or ("Standby" if ok else "InService"), **waits}


def back(ok=True, error=""):
    return {"ok": ok, "error": error, "lifecycle_state": "InService" if ok else "Standby"}


def svc(out, into=None, times=None):
    return {"out": out, "in": into, "times": times or {}}


def outcome(batch_hosts, active, results, **kw):
    args = {"batch": 2, "canary": False, "max_fail_percentage": 0, "total_hosts": 10, "failed_before": 0,
            "version": "2.0.0", **kw}
    return rollout.batch_outcome(args.pop("batch"), batch_hosts, active, results, **args)


def test_all_activated_and_back_in_service_are_deployed():
    results = {"a": result("a", "activated"), "b": result("b", "activated")}
    service = svc({"i-a": entry(), "i-b": entry()}, {"i-a": back(), "i-b": back()})
    out = outcome(["a", "b"], ["deploy-batch-2", "a", "b"], results, service=service)
    assert [r["status"] for r in out["results"]] == ["deployed", "deployed"]
    assert [r["version_after"] for r in out["results"]] == ["2.0.0", "2.0.0"]
    assert not any(r["out_of_service"] for r in out["results"])
    assert out["failed"] == [] and out["lost"] == [] and not out["aborted"] and out["reason"] == ""


def test_before_the_return_an_activated_host_counts_as_deployed_and_is_to_return():
    results = {"a": result("a", "activated"), "b": result("b", "rolled_back")}
    out = outcome(["a", "b"], ["deploy-batch-2", "a", "b"], results, service=svc({"i-a": entry(), "i-b": entry()}))
    assert [r["status"] for r in out["results"]] == ["deployed", "rolled_back"]
    assert out["to_return"] == ["a", "b"] and out["failed"] == ["b"] and out["aborted"]


def test_times_and_waits_come_from_the_batch_and_the_host():
    results = {"a": result("a", "activated", times={"activated": 112.0})}
    service = svc({"i-a": entry(lifecycle_wait_seconds=1, target_wait_seconds=5)},
                  {"i-a": {**back(), "lifecycle_wait_seconds": 1, "target_wait_seconds": 2}},
                  {"out": 100.0, "drained": 108.0, "in": 113.0, "back": 117.0})
    host = outcome(["a"], ["deploy-batch-2", "a"], results, service=service)["results"][0]
    assert host["times"] == {"out": 100.0, "drained": 108.0, "installed": 112.0, "healthy": 112.0, "in": 117.0}
    assert host["seconds"] == {"waits": 9.0, "total": 17.0, "out_of_service": 8.0, "deploy": 4.0, "back_in_service": 4.0}


def test_a_host_gone_from_the_play_is_lost_stays_out_and_stops_the_rollout():
    # Ansible drops an unreachable host from ansible_play_batch; its result stopped mid-window.
    results = {"a": result("a", "activated"), "b": result("b", "activating")}
    service = svc({"i-a": entry(), "i-b": entry()})
    check = outcome(["a", "b"], ["deploy-batch-2", "a"], results, service=service)
    assert check["to_return"] == ["a"]  # the lost host is never put back in service
    out = outcome(["a", "b"], ["deploy-batch-2", "a"], results, service={**service, "in": {"i-a": back()}})
    assert out["lost"] == ["b"] and out["failed"] == ["b"] and out["aborted"]
    lost = out["results"][1]
    assert lost["status"] == "unreachable" and lost["version_after"] == "unknown" and lost["out_of_service"]
    assert "last step: activating" in lost["error"] and "left out of service" in lost["error"]
    assert "1 of 10 hosts failed" in out["reason"]
    assert rollout.left_out_of_service(out["results"]) == ["i-b"]


def test_a_lost_host_whose_instance_was_terminated_is_not_out_of_service():
    results = {"b": result("b", "activating")}
    out = outcome(["b"], ["deploy-batch-2"], results, service=svc({"i-b": entry()}, {}), gone=["i-b"])
    host = out["results"][0]
    assert host["status"] == "unreachable" and not host["out_of_service"] and out["aborted"]
    assert "its instance was terminated" in host["error"]


def test_an_instance_terminated_before_its_batch_is_left_alone():
    # The ASG terminated it while an earlier batch was out: the out step finds it Terminating.
    results = {"a": result("a", "activated"), "b": result("b", "not_deployed")}
    service = svc({"i-a": entry(), "i-b": entry(ok=False, state="Terminating", error="lifecycle state Terminating")})
    check = outcome(["a", "b"], ["deploy-batch-2", "a", "b"], results, service=service)
    assert check["to_return"] == ["a"]
    out = outcome(["a", "b"], ["deploy-batch-2", "a", "b"], results, service={**service, "in": {"i-a": back()}})
    assert [r["status"] for r in out["results"]] == ["deployed", "vanished"]
    assert not out["aborted"] and out["failed"] == [] and not out["results"][1]["out_of_service"]


def test_a_host_that_did_not_leave_service_fails_and_is_put_back_when_half_out():
    # The drain timed out: the instance is in Standby but not drained; it is returned untouched.
    results = {"a": result("a", "not_deployed")}
    service = svc({"i-a": entry(ok=False, state="Standby", error="drain timed out")})
    check = outcome(["a"], ["deploy-batch-2", "a"], results, service=service)
    assert check["to_return"] == ["a"] and check["aborted"]
    out = outcome(["a"], ["deploy-batch-2", "a"], results, service={**service, "in": {"i-a": back()}})
    assert out["results"][0]["status"] == "not_deployed" and not out["results"][0]["out_of_service"]


def test_an_unknown_out_step_still_returns_the_answering_hosts():
    # The out step failed as a whole: nobody knows which instances left service.
    results = {"a": result("a", "not_deployed"), "b": result("b", "not_deployed")}
    check = outcome(["a", "b"], ["deploy-batch-2", "a", "b"], results, service=svc({}))
    assert check["to_return"] == ["a", "b"] and check["aborted"]


def test_a_host_that_does_not_come_back_healthy_fails_and_stays_out():
    results = {"a": result("a", "activated"), "b": result("b", "rolled_back")}
    service = svc({"i-a": entry(), "i-b": entry()}, {"i-a": back(False, "unhealthy"), "i-b": back(False, "timeout")})
    out = outcome(["a", "b"], ["deploy-batch-2", "a", "b"], results, service=service)
    a, b = out["results"]
    assert a["status"] == "failed" and a["out_of_service"] and "unhealthy" in a["error"]
    assert b["status"] == "rollback_failed" and b["out_of_service"] and "timeout" in b["rollback_error"]
    assert out["failed"] == ["a", "b"]


def test_a_failed_switch_back_is_never_returned():
    results = {"a": result("a", "rollback_failed")}
    service = svc({"i-a": entry()})
    assert outcome(["a"], ["deploy-batch-2", "a"], results, service=service)["to_return"] == []
    out = outcome(["a"], ["deploy-batch-2", "a"], results, service={**service, "in": {}})
    assert out["results"][0]["out_of_service"] and out["failed"] == ["a"]


def test_a_whole_batch_lost_is_accounted_for():
    # The canary frozen before it left service: the coordinator is the only host left in the batch.
    out = outcome(["a"], ["deploy-batch-1"], {"a": result("a", "leaving service")}, batch=1, canary=True,
                  service=svc({"i-a": entry(ok=False, state="InService", error="timeout")}, {}))
    assert out["lost"] == ["a"] and out["aborted"]
    assert out["results"][0]["out_of_service"] is False
    assert "it had not left service" in out["results"][0]["error"]
    assert "canary failed" in out["reason"]


def test_a_host_that_set_no_result_is_lost():
    out = outcome(["a"], ["deploy-batch-2"], {"a": None})
    assert out["results"][0]["host"] == "a" and out["results"][0]["batch"] == 2
    assert out["results"][0]["status"] == "unreachable" and "not started" in out["results"][0]["error"]


def test_a_still_running_host_with_an_unfinished_result_is_lost_too():
    # A host that failed outside the deploy's rescue stays in the play with no final status.
    out = outcome(["a"], ["deploy-batch-2", "a"], {"a": result("a", "rolling back")}, service=svc({"i-a": entry()}, {}))
    assert out["lost"] == ["a"] and out["results"][0]["out_of_service"]


def test_a_failed_canary_always_stops_whatever_the_percentage_allows():
    out = outcome(["a"], ["deploy-batch-1", "a"], {"a": result("a", "rolled_back")}, batch=1, canary=True,
                  max_fail_percentage=50, service=svc({"i-a": entry()}, {"i-a": back()}))
    assert out["aborted"] and "a failed canary always stops the rollout" in out["reason"]


def test_failures_within_the_percentage_go_on_and_count_across_batches():
    results = {"a": result("a", "rolled_back"), "b": result("b", "activated")}
    service = svc({"i-a": entry(), "i-b": entry()}, {"i-a": back(), "i-b": back()})
    first = outcome(["a", "b"], ["deploy-batch-2", "a", "b"], results, max_fail_percentage=20, service=service)
    assert first["failed"] == ["a"] and not first["aborted"]
    second = outcome(["c"], ["deploy-batch-3", "c"], {"c": result("c", "rollback_failed")}, batch=3,
                     max_fail_percentage=20, failed_before=2, service=svc({"i-c": entry()}, {}))
    assert second["aborted"] and "3 of 10 hosts failed (30%)" in second["reason"]


# -- the record --------------------------------------------------------------------------------

def test_standby_record_merges_never_replaces():
    outcomes = [
        {"results": [result("a", "deployed", "i-a"), result("b", "rollback_failed", "i-b", out=True)], "lost": []},
        {"results": [result("r", "deployed", "i-r")], "lost": []},
    ]
    record = rollout.standby_record(["i-r", "i-s"], outcomes, ["i-c", "i-d"])
    # b left out earlier, the batch's c and d, the interrupted run's s (r is back in service).
    assert record == ["i-b", "i-c", "i-d", "i-s"]


def test_final_results_are_the_batches_accounting_in_order():
    outcomes = [{"results": [result("a", "deployed")], "lost": []},
                {"results": [result("b", "unreachable", out=True)], "lost": ["b"]}]
    final = rollout.final_results(outcomes)
    assert [r["status"] for r in final] == ["deployed", "unreachable"]
    assert rollout.left_out_of_service(final) == ["i-b"]


# -- the whole-deploy rollback ------------------------------------------------------------------

ALARM = {"kind": "alarm", "alarm": "sampleapp-prod-web-5xx", "fired_at": "2026-12-01T05:56:34.123000+00:00",
         "reason": "Threshold Crossed: 1 datapoint [12.0 (01/12/26 05:55:00)] was greater than the threshold (5.0)."}


def deployed(host, batch, **extra):
    return result(host, "deployed", batch=batch, version_before="1.0", version_after="2.0",
                  times={"out": 100.0 * batch, "in": 100.0 * batch + 30}, seconds={"total": 30.0}, **extra)


def rollout_so_far():
    """Canary web-1; batch 2 web-2, web-3 (web-3 failed its return to service, still on 2.0);
    batch 3 web-4 deployed, web-5 switched back on its own failure, web-6 vanished."""
    return [
        {"results": [deployed("web-1", 1)], "lost": []},
        {"results": [deployed("web-2", 2), result("web-3", "failed", batch=2, version_after="2.0", out=True)],
         "lost": []},
        {"results": [deployed("web-4", 3), result("web-5", "rolled_back", batch=3, version_after="1.0",
                                                  error="activate: health gate failed"),
                     result("web-6", "vanished", batch=3)], "lost": []},
    ]


def test_the_stop_is_one_line_naming_the_alarm_its_reason_and_when_it_fired():
    record = rollout.stop_record(ALARM)
    assert record["fired_at"] == "2026-12-01T05:56:34Z" and record["fired"] == pytest.approx(1796104594.123)
    assert record["line"] == (f"alarm sampleapp-prod-web-5xx went to ALARM at 2026-12-01T05:56:34Z: {ALARM['reason']}")
    assert rollout.stop_record({**ALARM, "fired_at": 1796104594})["fired_at"] == "2026-12-01T05:56:34Z"
    assert rollout.stop_record({"kind": "abort", "reason": "checkpoint 1: p99 looks wrong"})["line"] == \
        "checkpoint 1: p99 looks wrong"
    assert rollout.stop_record({"kind": "timeout"})["line"] == "nobody resumed the rollout in time"
    assert rollout.stop_record(None) is None
    for bad in ({"kind": "alarm"}, {"kind": "panic"}, "alarm"):
        with pytest.raises(ValueError):
            rollout.stop_record(bad)


@pytest.mark.parametrize(("stop", "scope", "whole"), [
    ({"kind": "failure", "reason": "the canary failed"}, "batch", False),
    ({"kind": "failure", "reason": "the canary failed"}, "all", True),
    (ALARM, "batch", True),
    ({"kind": "abort"}, "batch", True),
    ({"kind": "timeout"}, "batch", True),
    (None, "all", False),
])
def test_an_alarm_or_an_operator_switches_back_all_a_failure_only_with_scope_all(stop, scope, whole):
    assert rollout.rolls_back_all(stop, scope) is whole
    batches = rollout.rollback_batches(rollout_so_far(), stop, scope)
    assert bool(batches) is whole


def test_the_batches_to_switch_back_are_every_moved_host_still_there_newest_batch_first():
    batches = rollout.rollback_batches(rollout_so_far(), ALARM)
    assert batches == [
        {"batch": 3, "hosts": ["web-4"], "instance_ids": ["i-web-4"]},  # not web-5 (back already), not web-6 (gone)
        {"batch": 2, "hosts": ["web-2", "web-3"], "instance_ids": ["i-web-2", "i-web-3"]},
        {"batch": 1, "hosts": ["web-1"], "instance_ids": ["i-web-1"]},
    ]
    # An alarm during the canary's bake: the canary only, no other host touched.
    assert rollout.rollback_batches(rollout_so_far()[:1], ALARM) == [
        {"batch": 1, "hosts": ["web-1"], "instance_ids": ["i-web-1"]}]


def switched(host, status="rolled_back", **extra):
    return {"host": host, "instance_id": f"i-{host}", "status": status, "version_before": "1.0",
            "version_after": "1.0" if status == "rolled_back" else "unknown", **extra}


def test_a_rollback_batch_is_accounted_with_the_reason_and_the_deploys_times():
    outcomes = rollout_so_far()
    window = {"out": 900.0, "drained": 905.0, "in": 915.0, "back": 930.0}
    back_batch = rollout.rollback_outcome(
        2, ["web-2", "web-3"], ["web-2", "web-3"],
        {"web-2": switched("web-2"), "web-3": switched("web-3", "rollback_failed", rollback_error="health gate")},
        outcomes, ALARM, service=svc({"i-web-2": entry(), "i-web-3": entry()}, {"i-web-2": back()}, window))
    web2, web3 = back_batch["results"]
    assert back_batch["rollback"] is True and back_batch["aborted"] is True
    assert back_batch["reason"].startswith("alarm sampleapp-prod-web-5xx went to ALARM at 2026-12-01T05:56:34Z")
    assert web2["status"] == "rolled_back" and web2["version_after"] == "1.0" and web2["out_of_service"] is False
    assert web2["rollback_scope"] == "deploy" and web2["error"] == f"rollout: {back_batch['reason']}"
    assert web2["times"] == {"out": 200.0, "in": 230.0, "rollback": 900.0, "done": 930.0}
    assert web2["seconds"] == {"total": 30.0, "rollback": 30.0}
    assert web3["status"] == "rollback_failed" and web3["rollback_error"] == "health gate"
    assert back_batch["failed"] == ["web-3"] and back_batch["to_return"] == ["web-2"]
    # What the rest of the bookkeeping sees: the rollback's result in the batch's place.
    final = rollout.final_results([*outcomes, back_batch])
    assert [(r["host"], r["status"]) for r in final] == [
        ("web-1", "deployed"), ("web-2", "rolled_back"), ("web-3", "rollback_failed"), ("web-4", "deployed"),
        ("web-5", "rolled_back"), ("web-6", "vanished")]
    assert rollout.rolled_back_batches(final) == [2]
    # Resumed after this batch, the rollback lists what is left: web-3's switch back failed, it
    # is not tried again.
    assert [b["batch"] for b in rollout.rollback_batches([*outcomes, back_batch], ALARM)] == [3, 1]
    assert rollout.own_failure(web3) and not rollout.own_failure(web2)


def test_a_host_that_could_not_leave_service_or_stopped_answering_during_the_rollback():
    outcomes = rollout_so_far()
    window = svc({"i-web-4": entry(ok=False, error="MinSize")}, {}, {"out": 900.0, "back": 930.0})
    stuck = rollout.rollback_outcome(3, ["web-4"], ["web-4"], {"web-4": switched("web-4", "not_deployed")},
                                     outcomes, ALARM, service=window)["results"][0]
    assert stuck["status"] == "rollback_failed" and stuck["version_after"] == "2.0"
    assert stuck["rollback_error"] == "did not leave service for the switch back: MinSize"
    assert stuck["out_of_service"] is False
    lost = rollout.rollback_outcome(1, ["web-1"], [], {}, outcomes, ALARM,
                                    service=svc({"i-web-1": entry()}, {}, {"out": 900.0}))
    assert lost["lost"] == ["web-1"] and lost["results"][0]["status"] == "unreachable"
    assert lost["results"][0]["out_of_service"] is True
    assert rollout.standby_record([], [*outcomes, lost], []) == ["i-web-1", "i-web-3"]
    with pytest.raises(ValueError):
        rollout.rollback_outcome(1, ["web-1"], ["web-1"], {}, outcomes, None)


def test_the_lock_record_follows_the_rollbacks_result():
    outcomes = rollout_so_far()  # web-3 left out of service by its batch
    back_batch = rollout.rollback_outcome(2, ["web-3"], ["web-3"], {"web-3": switched("web-3")}, outcomes, ALARM,
                                          service=svc({"i-web-3": entry()}, {"i-web-3": back()}, {}))
    assert rollout.standby_record([], outcomes, []) == ["i-web-3"]
    assert rollout.standby_record([], [*outcomes, back_batch], []) == []


def test_the_rollback_filters_through_ansible():
    outcomes = rollout_so_far()
    plan, accounted = run_tasks([
        {"name": "plan", "ansible.builtin.set_fact": {
            "rollback": "{{ outcomes | ec2fleet.fleet.rollback_batches(stop, scope='ALL') }}"},
         "vars": {"outcomes": outcomes, "stop": {"kind": "failure", "reason": "batch 3 failed"}}},
        {"name": "account", "ansible.builtin.set_fact": {
            "outcome": "{{ rollback[0].hosts | ec2fleet.fleet.rollback_outcome(rollback[0].hosts, results, "
                       "batch=rollback[0].batch, outcomes=outcomes, stop=stop) }}"},
         "vars": {"outcomes": outcomes, "stop": {"kind": "failure", "reason": "batch 3 failed"},
                  "results": {"web-4": switched("web-4")}}},
    ])
    assert plan["ansible_facts"]["rollback"] == rollout.rollback_batches(
        outcomes, {"kind": "failure", "reason": "batch 3 failed"}, "all")
    result = accounted["ansible_facts"]["outcome"]["results"][0]
    assert (result["status"], result["error"]) == ("rolled_back", "rollout: batch 3 failed")

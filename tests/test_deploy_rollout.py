"""The rollout's bookkeeping (plugins/module_utils/deploy_rollout.py): the queue with a coordinator
per batch, a batch's outcome with lost hosts, the lock's record of hosts out of service."""

from __future__ import annotations

import pytest
from ansible_collections.ec2fleet.fleet.plugins.module_utils import deploy_rollout as rollout


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

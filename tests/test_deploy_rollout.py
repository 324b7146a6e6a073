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

def outcome(batch_hosts, active, results, **kw):
    args = {"batch": 2, "canary": False, "max_fail_percentage": 0, "total_hosts": 10, "failed_before": 0, **kw}
    return rollout.batch_outcome(args.pop("batch"), batch_hosts, active, results, **args)


def test_all_deployed_goes_on():
    out = outcome(["a", "b"], ["deploy-batch-2", "a", "b"], {"a": result("a", "deployed"), "b": result("b", "deployed")})
    assert out == {"results": [result("a", "deployed"), result("b", "deployed")], "failed": [], "lost": [],
                   "aborted": False, "reason": ""}


def test_a_host_gone_from_the_play_is_lost_and_stops_the_rollout():
    # Ansible drops an unreachable host from ansible_play_batch; its result stopped mid-deploy.
    results = {"a": result("a", "deployed"), "b": result("b", "deploying", out=True)}
    out = outcome(["a", "b"], ["deploy-batch-2", "a"], results)
    assert out["lost"] == ["b"] and out["failed"] == ["b"] and out["aborted"]
    lost = out["results"][1]
    assert lost["status"] == "unreachable" and lost["version_after"] == "unknown" and lost["out_of_service"]
    assert "last step: deploying" in lost["error"] and "left out of service" in lost["error"]
    assert "1 of 10 hosts failed" in out["reason"]


def test_a_whole_batch_lost_is_accounted_for():
    # The canary frozen: the coordinator is the only host left in the batch.
    out = outcome(["a"], ["deploy-batch-1"], {"a": result("a", "leaving service")}, batch=1, canary=True)
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
    out = outcome(["a"], ["deploy-batch-2", "a"], {"a": result("a", "returning to service", out=True)})
    assert out["lost"] == ["a"]


def test_a_failed_canary_always_stops_whatever_the_percentage_allows():
    out = outcome(["a"], ["deploy-batch-1", "a"], {"a": result("a", "rolled_back")}, batch=1, canary=True,
                  max_fail_percentage=50)
    assert out["aborted"] and "a failed canary always stops the rollout" in out["reason"]


def test_failures_within_the_percentage_go_on_and_count_across_batches():
    results = {"a": result("a", "rolled_back"), "b": result("b", "deployed")}
    first = outcome(["a", "b"], ["deploy-batch-2", "a", "b"], results, max_fail_percentage=20)
    assert first["failed"] == ["a"] and not first["aborted"]
    second = outcome(["c"], ["deploy-batch-3", "c"], {"c": result("c", "rollback_failed")}, batch=3,
                     max_fail_percentage=20, failed_before=2)
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


def test_final_results_prefer_the_hosts_own_word_unless_lost():
    outcomes = [{"results": [result("a", "deployed"), result("b", "unreachable", out=True)], "lost": ["b"]}]
    # a was rolled back with its batch after the accounting; b answered again later but was lost.
    current = {"a": result("a", "rolled_back"), "b": result("b", "deployed")}
    final = rollout.final_results(outcomes, current)
    assert [r["status"] for r in final] == ["rolled_back", "unreachable"]
    assert rollout.left_out_of_service(final) == ["i-b"]

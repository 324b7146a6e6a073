"""The deploy's progress lines (callback ec2fleet.fleet.deploy_progress): counts, clock, estimate."""

from __future__ import annotations

from ansible_collections.ec2fleet.fleet.plugins.callback.deploy_progress import DeployProgress, clock


class Clock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self):
        return self.t


def test_lines_follow_the_batches_with_counts_elapsed_and_an_estimate():
    now = Clock()
    p = DeployProgress(now=now)
    assert p.handle({"event": "plan", "version": "2.0.0", "hosts": 5, "batches": 3, "skipped": 1}) == [
        "deploy: 2.0.0 to 5 host(s) in 3 batch(es), 1 already on it"]
    assert p.handle({"event": "batch_start", "batch": 1, "batches": 3, "hosts": ["a"]}) == [
        "deploy: batch 1 of 3: 1 host(s) a | elapsed 0:00, estimate after the first batch"]
    now.t += 20
    assert p.handle({"event": "host", "host": "a", "phase": "out"}) == [
        "deploy: batch 1 of 3: all out of service | out of service 1/1, healthy 0/1, back in service 0/1 | "
        "elapsed 0:20, estimate after the first batch"]
    now.t += 40
    p.handle({"event": "host", "host": "a", "phase": "healthy"})
    p.handle({"event": "host", "host": "a", "phase": "in"})
    assert p.handle({"event": "batch_end", "batch": 1}) == [
        "deploy: batch 1 of 3 deployed in 1:00 | out of service 1/1, healthy 1/1, back in service 1/1 | "
        "elapsed 1:00, about 2:00 left"]
    now.t += 5
    lines = p.handle({"event": "batch_start", "batch": 2, "batches": 3, "hosts": ["b", "c"]})
    assert lines == ["deploy: batch 2 of 3: 2 host(s) b, c | elapsed 1:05, about 2:00 left"]
    # Half the batch out of service prints nothing; the whole batch does.
    assert p.handle({"event": "host", "host": "b", "phase": "out"}) == []
    assert p.handle({"event": "host", "host": "zz", "phase": "out"}) == []
    assert "all out of service | out of service 2/2, healthy 0/2" in p.handle(
        {"event": "host", "host": "c", "phase": "out"})[0]
    failed = p.handle({"event": "host", "host": "c", "phase": "failed", "reason": "health check timed out"})
    assert failed[0].startswith("deploy: batch 2 of 3: c FAILED: health check timed out | ")
    # The coordinator reports the batch's return to service at once, for the hosts that made it.
    assert p.handle({"event": "host", "hosts": ["b", "zz"], "phase": "in"}) == []
    assert p.handle({"event": "host", "hosts": [], "phase": "in"}) == []
    now.t += 80
    assert p.handle({"event": "batch_end", "batch": 2, "state": "rolled_back"})[0].startswith(
        "deploy: batch 2 of 3 rolled_back in 1:20 | out of service 2/2, healthy 0/2, back in service 1/2, failed 1 |")


def test_other_facts_print_nothing():
    p = DeployProgress(now=Clock())
    assert p.handle({"event": "something else"}) == []
    assert p.handle({}) == []


def test_clock_format():
    assert [clock(s) for s in (0, 59.6, 61, 3599, 3661)] == ["0:00", "1:00", "1:01", "59:59", "1:01:01"]


def test_the_whole_deploy_rollback_says_what_it_switches_back():
    now = Clock()
    p = DeployProgress(now=now)
    p.handle({"event": "plan", "version": "2.0.0", "hosts": 4, "batches": 3})
    now.t += 90
    assert p.handle({"event": "rollback", "batches": [2, 1], "hosts": 3}) == [
        "deploy: switching back 3 host(s) of batch(es) 2, 1, newest first | elapsed 1:30"]

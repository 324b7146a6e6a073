# Copyright: the ec2-fleet project
# Apache License 2.0
"""Bookkeeping of a rolling deploy's batches: the queue the rollout play runs over, and what a
batch's end means for the rollout (which hosts failed, which were lost, whether to go on).

Each batch is led by a coordinator: an inventory host of its own, on the controller's local
connection, queued first in the batch. It runs the batch's controller tasks (lock record, the
accounting below) and, being in every batch, keeps Ansible from ending the whole playbook when
every real host of a batch becomes unreachable (Ansible stops all later plays when a whole
serial batch fails, which would skip the cleanup: processes left suspended, lock held).

Pure functions on plain data: tested in tests/test_deploy_rollout.py.
"""

from __future__ import annotations

COORDINATOR_PREFIX = "deploy-batch-"

# Statuses a host's result ends in; anything else means the host was lost midway.
FINAL = ("deployed", "rolled_back", "rollback_failed")
# Statuses that count as a failure of the batch.
FAILED = ("rolled_back", "rollback_failed", "unreachable")


def coordinator_name(batch):
    return f"{COORDINATOR_PREFIX}{batch}"


def is_coordinator(name):
    return str(name).startswith(COORDINATOR_PREFIX)


def rollout_queue(batches, first=1):
    """[{name, batch, coordinator}] in the order the rollout play must see the hosts, and the
    serial sizes that cut that order into the batches (each batch one host longer: its coordinator).
    ``first`` numbers the first batch (the sweep continues the rollout's numbering)."""
    if not isinstance(batches, (list, tuple)):
        raise ValueError(f"expected a list of batches, got {type(batches).__name__}")
    queue, sizes = [], []
    for number, batch in enumerate(batches, start=first):
        if not isinstance(batch, (list, tuple)) or not batch:
            raise ValueError(f"batch {number} is not a non-empty list of host names: {batch!r}")
        queue.append({"name": coordinator_name(number), "batch": number, "coordinator": True})
        queue.extend({"name": str(host), "batch": number, "coordinator": False} for host in batch)
        sizes.append(len(batch) + 1)
    return {"queue": queue, "serial": sizes}


def _lost_result(host, result, batch):
    """The final result of a host that stopped answering: what it had recorded so far, marked
    unreachable; out of service when it had left service and had not come back."""
    result = dict(result or {})
    result.setdefault("host", host)
    result.setdefault("batch", batch)
    phase = result.get("status") or "not started"
    result["status"] = "unreachable"
    result["version_after"] = "unknown"
    result["error"] = (
        f"stopped answering during the deploy (last step: {phase}); left out of service for an operator"
        if result.get("out_of_service")
        else f"stopped answering during the deploy (last step: {phase}); it had not left service"
    )
    return result


def batch_outcome(batch, batch_hosts, active_hosts, results, canary, max_fail_percentage, total_hosts, failed_before=0):
    """What a finished batch means for the rollout.

    batch: 1-based number; batch_hosts: the batch's real hosts as planned; active_hosts: the
    play's hosts still running at the end of the batch (ansible_play_batch: Ansible drops
    unreachable hosts from it); results: host -> its deploy_result (None when it set none);
    canary: whether this batch is the canary; failed_before: hosts failed in earlier batches.

    Returns {results: final results of every host of the batch, failed: host names, lost: host
    names, aborted: bool, reason: str}. A canary with any failure always stops the rollout;
    otherwise it stops when the failed share of all hosts exceeds max_fail_percentage.
    """
    active = set(active_hosts)
    final, lost, failed = [], [], []
    for host in batch_hosts:
        result = results.get(host)
        if host not in active or not result or result.get("status") not in FINAL:
            result = _lost_result(host, result, batch)
            lost.append(host)
        final.append(result)
        if result["status"] in FAILED:
            failed.append(host)
    share = 100.0 * (len(failed) + failed_before) / max(total_hosts, 1)
    reason = ""
    if failed and canary:
        reason = f"the canary failed ({', '.join(failed)}): a failed canary always stops the rollout"
    elif failed and share > float(max_fail_percentage):
        reason = (
            f"{len(failed) + failed_before} of {total_hosts} hosts failed ({share:.0f}%), more than "
            f"deploy_max_fail_percentage={max_fail_percentage}"
        )
    return {"results": final, "failed": failed, "lost": lost, "aborted": bool(reason), "reason": reason}


def final_results(outcomes, current):
    """Every host's last word: its own result where it finished the run reachable (a batch's
    rollback after the accounting updates it), else what its batch's accounting recorded."""
    merged = []
    for outcome in outcomes:
        for result in outcome["results"]:
            host = result.get("host")
            latest = current.get(host) if host not in outcome["lost"] else None
            merged.append(latest if latest and latest.get("status") in FINAL else result)
    return merged


def standby_record(recovered, outcomes, batch_instance_ids):
    """Instance ids the deploy lock must hold as out of service before a batch leaves service:
    the batch's, those earlier batches left out, and an interrupted run's not yet redeployed.
    Merged, never replaced, so a crash at any point leaves every such instance on record."""
    done, left_out = set(), set()
    for outcome in outcomes:
        for result in outcome["results"]:
            iid = result.get("instance_id")
            if not iid:
                continue
            if result.get("out_of_service"):
                left_out.add(iid)
            else:
                done.add(iid)
    return sorted(left_out | set(batch_instance_ids) | (set(recovered) - done))


def left_out_of_service(results):
    """Instance ids this run took out of service and did not put back."""
    return sorted({r["instance_id"] for r in results if r.get("out_of_service") and r.get("instance_id")})

# Copyright: the ec2-fleet project
# Apache License 2.0
"""Bookkeeping of a rolling deploy's batches: the queue the rollout play runs over, and what a
batch's end means for the rollout (which hosts failed, which were lost, whether to go on).

When the rollout stops, the whole-deploy rollback (``rollback_batches``, ``rollback_outcome``)
switches back, newest batch first, every host this deploy moved: always after an alarm or an
operator's abort, after a failed batch only with ``deploy_rollback_on_failure: all`` (by default
the failed batch switches back its own hosts, and nothing else moves).

Each batch is led by a coordinator: an inventory host of its own, on the controller's local
connection, queued first in the batch. It runs the batch's controller tasks (lock record, the
accounting below) and, being in every batch, keeps Ansible from ending the whole playbook when
every real host of a batch becomes unreachable (Ansible stops all later plays when a whole
serial batch fails, which would skip the cleanup: processes left suspended, lock held).

Pure functions on plain data: tested in tests/test_deploy_rollout.py.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone

COORDINATOR_PREFIX = "deploy-batch-"

# Statuses a host sets as its last word in the batch's window (tasks/deploy-host.yml): it did
# not leave service, its new release is active and healthy, or it is back on the release before.
HOST_DONE = ("not_deployed", "activated", "rolled_back", "rollback_failed")
# Statuses a host's final result ends in (batch_outcome below).
FINAL = ("deployed", "rolled_back", "rollback_failed", "unreachable", "not_deployed", "failed", "vanished")
# Final statuses that count as a failure of the batch. A vanished host (its instance terminated
# before it left service) is left alone, as the planner leaves an instance already Terminating.
FAILED = ("rolled_back", "rollback_failed", "unreachable", "not_deployed", "failed")
# Lifecycle states in which an instance is out of service, to be put back or kept on record.
OUT_STATES = ("Standby", "EnteringStandby", "Pending", "Pending:Wait", "Pending:Proceed")
# Lifecycle states (or their absence) of an instance that is going or gone.
# (ec2fleet.fleet.service_state says "detached" for an instance no longer in its group.)
GONE_STATES = ("Terminating", "Terminating:Wait", "Terminating:Proceed", "Terminated", "Detaching", "Detached", "detached")
# Final statuses of a host whose new release is active and whose instance is still there: what a
# whole-deploy rollback switches back.
MOVED = ("deployed", "failed")
# Why a rollout stopped. Only a failed batch (its health gate) leaves the rollback scope to
# deploy_rollback_on_failure; the others judged the release itself.
STOP_KINDS = ("failure", "alarm", "abort", "timeout")
ROLLBACK_SCOPES = ("batch", "all")
# A host switched back because its batch failed, not on its own failure (tasks/deploy-batch.yml).
BATCH_ERROR = "batch:"
# A host switched back by the whole-deploy rollback.
DEPLOY_SCOPE = "deploy"


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


def _service_entry(service, step, instance_id):
    return ((service or {}).get(step) or {}).get(instance_id) or {}


def _is_out(entry):
    """Whether the out-of-service step left the instance out (a drain that timed out still did)."""
    return bool(entry) and (entry.get("ok") or entry.get("lifecycle_state") in OUT_STATES)


def _is_gone(entry, gone, instance_id):
    return instance_id in gone or (entry or {}).get("lifecycle_state") in GONE_STATES


def to_return(batch_hosts, active_hosts, results, service):
    """Hosts the batch puts back in service: those still answering, on a healthy release (the
    new one, the one before after a switch back, or untouched) that the out step took out, or
    may have (its outcome unknown: the return is a no-op for an instance in service). A host that
    stopped answering stays out (the lock keeps it); so does one whose switch back failed."""
    active, names = set(active_hosts), []
    for host in batch_hosts:
        result = results.get(host) or {}
        iid = result.get("instance_id")
        entry = _service_entry(service, "out", iid)
        if (host in active and iid and result.get("status") in ("activated", "rolled_back", "not_deployed")
                and (not entry or _is_out(entry)) and not _is_gone(entry, (), iid)):
            names.append(host)
    return names


def _times(result, service, instance_id):
    """The host's step times (epoch seconds) and durations, from the batch's service steps (the
    coordinator's) and the host's own activation or switch back."""
    batch = (service or {}).get("times") or {}
    own = result.get("times") or {}
    out_entry = _service_entry(service, "out", instance_id)
    in_entry = _service_entry(service, "in", instance_id)
    steps = {"out": batch.get("out"), "drained": batch.get("drained"), "installed": own.get("activated"),
             "healthy": own.get("activated"), "rollback": own.get("rollback"), "done": own.get("done"),
             "in": batch.get("back")}
    times = {k: v for k, v in steps.items() if v is not None}
    waits = sum(float(e.get(k) or 0) for e in (out_entry, in_entry)
                for k in ("lifecycle_wait_seconds", "target_wait_seconds"))
    seconds = {"waits": round(waits, 2)}
    if "out" in times and "in" in times:
        seconds["total"] = round(times["in"] - times["out"], 2)
    if "out" in times and "drained" in times:
        seconds["out_of_service"] = round(times["drained"] - times["out"], 2)
    if "drained" in times and "installed" in times:
        seconds["deploy"] = round(times["installed"] - times["drained"], 2)
    if batch.get("in") is not None and "in" in times:
        seconds["back_in_service"] = round(times["in"] - batch["in"], 2)
    return times, seconds


def _final(host, result, active, service, gone, batch, version):
    """One host's final result."""
    result = dict(result or {})
    result.setdefault("host", host)
    result.setdefault("batch", batch)
    iid = result.get("instance_id")
    out_entry = _service_entry(service, "out", iid)
    returned = (service or {}).get("in")
    in_entry = _service_entry(service, "in", iid)
    vanished = _is_gone(out_entry, gone, iid) or _is_gone(in_entry, gone, iid)
    status = result.get("status")
    times, seconds = _times(result, service, iid)
    result.update(times=times, seconds=seconds)
    if host not in active or status not in HOST_DONE:
        phase = status or "not started"
        out = _is_out(out_entry) and not vanished and not in_entry.get("ok")
        why = ("its instance was terminated" if vanished
               else "left out of service for an operator" if out else "it had not left service")
        result.update(status="unreachable", version_after="unknown", out_of_service=out,
                      error=f"stopped answering during the deploy (last step: {phase}); {why}")
        return result
    if status == "not_deployed" and vanished:
        result.update(status="vanished", out_of_service=False, version_after="",
                      error=f"its instance left the group before it left service ({out_entry.get('error') or 'terminated'}): left alone")
        return result
    back = in_entry.get("ok", False)
    was_out = _is_out(out_entry) and not vanished
    if status == "activated":
        if returned is None or back:
            result.update(status="deployed", version_after=version, out_of_service=False if returned is not None else was_out)
        else:
            result.update(status="failed", version_after=version,
                          out_of_service=was_out and in_entry.get("lifecycle_state") != "InService",
                          error=f"did not return to service healthy: {in_entry.get('error') or 'not returned'}")
    elif status == "rolled_back":
        if returned is not None and not back and was_out:
            result.update(status="rollback_failed", out_of_service=in_entry.get("lifecycle_state") != "InService",
                          rollback_error=f"did not return to service healthy: {in_entry.get('error') or 'not returned'}")
        else:
            result["out_of_service"] = was_out and returned is None
    elif status == "not_deployed":
        result["out_of_service"] = (in_entry.get("lifecycle_state") not in (None, "InService") and not back
                                    if in_entry else was_out)
    else:  # rollback_failed: left out of service for an operator
        result["out_of_service"] = was_out
    return result


def batch_outcome(batch, batch_hosts, active_hosts, results, canary, max_fail_percentage, total_hosts,
                  failed_before=0, service=None, gone=(), version=""):
    """What a batch means for the rollout.

    batch: 1-based number; batch_hosts: the batch's real hosts as planned; active_hosts: the
    play's hosts still running (ansible_play_batch: Ansible drops unreachable hosts from it);
    results: host -> its deploy_result (None when it set none); canary: whether this batch is
    the canary; failed_before: hosts failed in earlier batches; service: the coordinator's
    steps, {"out": {instance id: entry}, "in": {instance id: entry} or None before the batch
    returns to service, "times": {"out", "drained", "in", "back"}} (entries as
    ec2fleet.fleet.service_state returns them); gone: instance ids known terminated.

    Returns {results, failed, lost, aborted, reason, to_return}. Before the return to service
    (no "in"), a host whose release is active counts as deployed, and to_return lists the hosts
    to put back. A canary with any failure always stops the rollout; otherwise it
    stops when the failed share of all hosts exceeds max_fail_percentage.
    """
    active, gone = set(active_hosts), set(gone or ())
    final, lost, failed = [], [], []
    for host in batch_hosts:
        result = _final(host, results.get(host), active, service, gone, batch, version)
        if result["status"] == "unreachable":
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
    return {"results": final, "failed": failed, "lost": lost, "aborted": bool(reason), "reason": reason,
            "to_return": to_return(batch_hosts, active_hosts, results, service)}


def final_results(outcomes):
    """Every accounted host's final result, batch by batch; a host a whole-deploy rollback switched
    back has the rollback's result, in its batch's place."""
    latest = {}
    for outcome in outcomes:
        for result in outcome["results"]:
            latest[result.get("host")] = result  # insertion order: where the host first appeared
    return list(latest.values())


def standby_record(recovered, outcomes, batch_instance_ids):
    """Instance ids the deploy lock must hold as out of service before a batch leaves service:
    the batch's, those earlier batches left out, and an interrupted run's not yet redeployed.
    Merged, never replaced, so a crash at any point leaves every such instance on record."""
    done, left_out = set(), set()
    for result in final_results(outcomes):  # a rollback's result, where there is one
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


# --- the whole-deploy rollback ----------------------------------------------------------------

def _moment(value):
    """(ISO-8601 UTC text, epoch seconds) of a time given as epoch seconds or ISO-8601 text (what
    CloudWatch's StateUpdatedTimestamp becomes in Ansible); the text as it is and None otherwise."""
    if value is None or value == "":
        return None, None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        epoch = float(value)
    else:
        text = str(value).strip()
        try:
            epoch = float(text)
        except ValueError:
            try:
                moment = datetime.fromisoformat(re.sub(r"Z$", "+00:00", text.replace(" ", "T", 1)))
            except ValueError:
                return text, None
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=timezone.utc)
            epoch = moment.timestamp()
    return datetime.fromtimestamp(epoch, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"), epoch


def stop_record(stop):
    """Why the rollout stopped, normalized: {kind, alarm, reason, fired_at (ISO text), fired (epoch),
    line}. ``stop``: {kind (failure, alarm, abort or timeout), alarm (the alarm's name, for kind
    alarm), reason (CloudWatch's StateReason, an operator's note, the failure), fired_at (epoch
    seconds or ISO text: when the alarm went to ALARM, the operator answered...)}; None when the
    rollout did not stop."""
    if not stop:
        return None
    if not isinstance(stop, dict):
        raise ValueError(f"stop must be a dict with kind, alarm, reason and fired_at, got {stop!r}")
    kind = str(stop.get("kind") or ("alarm" if stop.get("alarm") else "failure")).strip().lower()
    if kind not in STOP_KINDS:
        raise ValueError(f"stop kind must be one of {', '.join(STOP_KINDS)}, got {stop.get('kind')!r}")
    alarm = str(stop["alarm"]) if stop.get("alarm") else None
    if kind == "alarm" and not alarm:
        raise ValueError("a stop of kind alarm needs the alarm's name (alarm)")
    reason = " ".join(str(stop.get("reason") or "").split())
    fired_at, fired = _moment(stop.get("fired_at"))
    if alarm:
        line = f"alarm {alarm} went to ALARM" + (f" at {fired_at}" if fired_at else "") + (f": {reason}" if reason else "")
    else:
        line = reason or {"failure": "a batch failed", "abort": "an operator aborted the rollout",
                          "timeout": "nobody resumed the rollout in time"}[kind]
    return {"kind": kind, "alarm": alarm, "reason": reason, "fired_at": fired_at, "fired": fired, "line": line}


def rolls_back_all(stop, scope):
    """Whether the stop switches back every host this deploy moved, not only the failed batch."""
    if scope not in ROLLBACK_SCOPES:
        raise ValueError(f"the rollback scope must be one of {', '.join(ROLLBACK_SCOPES)}, got {scope!r}")
    record = stop_record(stop)
    return record is not None and (scope == "all" or record["kind"] != "failure")


def rollback_batches(outcomes, stop, scope="batch"):
    """The batches to switch back after the rollout stopped, newest first:
    [{batch, hosts, instance_ids}] with every host whose new release is active and whose instance is
    still there (deployed; failed: active but not healthy back in service), in its batch as planned
    (so the switch back keeps the batch's capacity rules). Empty unless the stop switches back all
    (rolls_back_all); hosts a rollback already accounted for are not listed again, so after an
    interruption it lists what is left."""
    if not rolls_back_all(stop, scope):
        return []
    final = {result.get("host"): result for result in final_results(outcomes)}
    found = []
    for outcome in reversed(outcomes):
        if outcome.get("rollback"):
            continue
        hosts = [r["host"] for r in outcome["results"] if final.get(r.get("host"), {}).get("status") in MOVED
                 and final[r["host"]].get("rollback_scope") != DEPLOY_SCOPE]
        if hosts:
            found.append({"batch": int(final[hosts[0]].get("batch") or 0), "hosts": hosts,
                          "instance_ids": [final[h].get("instance_id") or "" for h in hosts]})
    return found


def rollback_outcome(batch, batch_hosts, active_hosts, results, outcomes, stop, service=None, gone=()):
    """A rollback batch's accounting, in the shape of batch_outcome's (the lock's record, the
    report and final_results read it the same way), with ``rollback`` true.

    batch: the batch's number as planned; batch_hosts: its hosts to switch back (rollback_batches);
    active_hosts, service, gone: as for batch_outcome, for the rollback window; results: host -> its
    deploy_result from the switch back (tasks/deploy-rollback-host.yml: rolled_back or
    rollback_failed; not_deployed when it did not leave service; none when it stopped answering);
    outcomes: the rollout's outcomes so far (each host's result before the rollback); stop: why
    (stop_record's input).

    A host switched back is ``rolled_back``; one whose switch back failed, or that could not leave
    service for it (still on the new release, in service), ``rollback_failed``; one that stopped
    answering ``unreachable`` (out of service when it had left). Each keeps its deploy's times and
    result, with ``rollback_scope: deploy``, the reason in ``error`` (``rollout: <why>``), and the
    rollback window's times (``rollback``: it left service, ``done``: back in service)."""
    record = stop_record(stop)
    if record is None:
        raise ValueError("a whole-deploy rollback needs the stop that caused it")
    active, gone = set(active_hosts), set(gone or ())
    before = {result.get("host"): result for result in final_results(outcomes)}
    window = (service or {}).get("times") or {}
    final, failed, lost = [], [], []
    for host in batch_hosts:
        previous = dict(before.get(host) or {"host": host, "batch": batch})
        # A host that stopped answering before its first step set no result: its instance is known.
        given = results.get(host) or {"instance_id": previous.get("instance_id")}
        now = _final(host, given, active, service, gone, batch, previous.get("version_after") or "")
        status = now["status"]
        merged = dict(previous, rollback_scope=DEPLOY_SCOPE, error=f"rollout: {record['line']}",
                      out_of_service=bool(now.get("out_of_service")))
        times = dict(previous.get("times") or {})
        times.update({k: v for k, v in (("rollback", window.get("out")), ("done", window.get("back")))
                      if v is not None})
        merged["times"] = times
        if window.get("out") is not None and window.get("back") is not None:
            merged["seconds"] = dict(previous.get("seconds") or {},
                                     rollback=round(float(window["back"]) - float(window["out"]), 2))
        if status == "rolled_back":
            merged.update(status="rolled_back", version_after=now.get("version_after") or previous.get("version_before"))
        elif status == "rollback_failed":
            merged.update(status="rollback_failed", version_after=now.get("version_after") or "unknown",
                          rollback_error=now.get("rollback_error") or now.get("error") or "the switch back failed")
        elif status == "not_deployed":
            why = _service_entry(service, "out", now.get("instance_id")).get("error") or now.get("error") or "no outcome"
            merged.update(status="rollback_failed", rollback_error=f"did not leave service for the switch back: {why}")
        elif status == "vanished":
            merged.update(status="vanished", out_of_service=False, version_after="",
                          rollback_error="its instance was terminated before the switch back")
        else:  # unreachable
            merged.update(status="unreachable", version_after="unknown",
                          rollback_error=f"while switching back: {now.get('error') or 'stopped answering'}")
            lost.append(host)
        if merged["status"] in ("rollback_failed", "unreachable"):
            failed.append(host)
        final.append(merged)
    return {"results": final, "failed": failed, "lost": lost, "aborted": True, "reason": record["line"],
            "rollback": True, "batch": int(batch), "to_return": to_return(batch_hosts, active_hosts, results, service)}


def with_the_deploy(result):
    """Whether a host was switched back by the whole-deploy rollback, its own release having passed."""
    return result.get("rollback_scope") == DEPLOY_SCOPE and result.get("status") == "rolled_back"


def own_failure(result):
    """Whether a host failed on its own account (not switched back with its batch or the deploy)."""
    if result.get("status") not in FAILED:
        return False
    if str(result.get("error") or "").startswith(BATCH_ERROR):
        return False
    return not with_the_deploy(result)


def rolled_back_batches(results):
    """Batch numbers the whole-deploy rollback switched back (hosts of), newest first."""
    return sorted({int(r.get("batch") or 0) for r in results if r.get("rollback_scope") == DEPLOY_SCOPE}, reverse=True)

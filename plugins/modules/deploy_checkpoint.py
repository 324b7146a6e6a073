#!/usr/bin/python
"""Ansible module: pause a deploy at a checkpoint until an operator resumes or aborts it, from any controller."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: deploy_checkpoint
short_description: Pause a rolling deploy at a checkpoint until an operator resumes or aborts it, from any controller
description:
  - "The pause and the answer live in the deploy lock's record (M(ec2fleet.fleet.deploy_lock), the
    SSM parameter C(/<app>/<env>/deploy-lock)), under C(data.checkpoint): C(number), C(batch),
    C(percents), C(hosts_done), C(hosts_total), C(paused_at), C(state) (C(paused), C(resumed),
    C(aborted) or C(timed_out)), C(answered_by), C(answered_at) and C(reason). One small entry,
    replaced at each checkpoint: the record stays bounded whatever the fleet."
  - O(state=paused) is the deploy's side. The run holding the lock (O(run_id)) records that it is
    paused at checkpoint O(number), then polls the record every O(poll_interval) seconds until an
    operator answers or O(timeout) seconds pass, extending the lock's expiry by O(ttl) as it waits
    (so the lock outlives the wait even without the deploy's heartbeat). It returns the answer in
    RV(answer) and does not fail on C(aborted) or C(timed_out) (RV(proceed) is false, RV(stop) says
    why, for the rollback); a timeout is recorded, so a late answer is refused. Paused again at the
    same checkpoint (a retried task), it goes on waiting, or returns the answer already given.
  - O(state=resumed) and O(state=aborted) are the operator's side, from any controller
    (C(playbooks/deploy-resume.yml)). They write the answer into the lock's record when, and only
    when, a live run is paused at a checkpoint (and it is run O(run_id), checkpoint O(number), when
    given); otherwise they fail in one line naming the holder and what it is doing. Giving the same
    answer again changes nothing.
  - Writes go through the same code as the lock's own updates (continuation parameters, the history
    check that keeps concurrent writes of the deploy, its heartbeat and the operator, the local
    C(flock)); the lock's expiry is left alone by an answer.
  - Runs on the controller; supports check mode (nothing is written and nothing waited for; the
    deploy's side answers V(resumed)).
version_added: "0.1.0"
author: ec2-fleet project (!UNKNOWN)
extends_documentation_fragment:
  - ec2fleet.fleet.aws
  - ec2fleet.fleet.aws.retries
options:
  name:
    description: Name of the deploy lock's SSM parameter. Default C(/<app>/<env>/deploy-lock) from O(app) and O(env).
    type: str
  app:
    description: Application name, used to build the default O(name).
    type: str
  env:
    description: Environment name, used to build the default O(name).
    type: str
  state:
    description:
      - V(paused) (the deploy waits at a checkpoint), V(resumed) or V(aborted) (an operator's answer).
    type: str
    choices: [paused, resumed, aborted]
    default: paused
  run_id:
    description:
      - With V(paused), the run holding the lock (required). With V(resumed) and V(aborted), answer only
        when this run is the one paused.
    type: str
  number:
    description:
      - With V(paused), the checkpoint's number (1, 2, ... as the plan's C(checkpoints) give it; required).
        With V(resumed) and V(aborted), answer only when this checkpoint is the one waiting.
    type: int
  batch:
    description: With V(paused), the batch that ended at the checkpoint (recorded for the operator).
    type: int
  percents:
    description: With V(paused), the percentages of the hosts to deploy the checkpoint stands for (recorded).
    type: list
    elements: int
    default: []
  hosts_done:
    description: With V(paused), the hosts deployed so far (recorded).
    type: int
  hosts_total:
    description: With V(paused), the hosts to deploy (recorded).
    type: int
  timeout:
    description: With V(paused), seconds to wait for an answer; then RV(answer) is V(timed_out).
    type: int
    default: 3600
  poll_interval:
    description: With V(paused), seconds between two reads of the record, less than O(timeout).
    type: int
    default: 5
  ttl:
    description:
      - With V(paused), the lock's time to live (seconds); while waiting, its expiry is pushed to now +
        O(ttl) every quarter of it (every minute at most). Use the deploy's C(deploy_lock_ttl).
    type: int
    default: 600
  by:
    description: With V(resumed) and V(aborted), who answers. Default C(<user>@<controller host>).
    type: str
  reason:
    description: With V(resumed) and V(aborted), a note kept with the answer and shown in the deploy's report.
    type: str
    default: ""
  tier:
    description: SSM parameter tier of the lock (as O(ec2fleet.fleet.deploy_lock#module:tier)).
    type: str
    choices: [Standard, Advanced]
    default: Standard
notes:
  - "IAM: the deploy lock's own actions (C(ssm:GetParameter), C(ssm:PutParameter),
    C(ssm:GetParameterHistory), C(ssm:DeleteParameter) on the lock and its continuation parameters)."
"""

EXAMPLES = r"""
# The deploy, at a checkpoint of the plan (deploy_checkpoint_wait: resume).
- name: Wait at checkpoint {{ checkpoint.number }} until an operator resumes the rollout
  ec2fleet.fleet.deploy_checkpoint:
    app: sampleapp
    env: prod
    run_id: "{{ deploy_lock.run_id }}"
    number: "{{ checkpoint.number }}"
    batch: "{{ checkpoint.batch }}"
    percents: "{{ checkpoint.percents }}"
    hosts_done: "{{ checkpoint.hosts }}"
    hosts_total: "{{ checkpoint.of }}"
    timeout: 3600
    ttl: 600
  vars:
    checkpoint: "{{ deploy_plan.checkpoints[0] }}"
  register: deploy_checkpoint

- name: Stop the rollout unless it was resumed
  ansible.builtin.set_fact:
    deploy_aborted: true
    deploy_stop: "{{ deploy_checkpoint.stop }}"
  when: not deploy_checkpoint.proceed

# An operator, from any controller (playbooks/deploy-resume.yml does this).
- name: Resume the deploy paused at a checkpoint
  ec2fleet.fleet.deploy_checkpoint:
    app: sampleapp
    env: prod
    state: resumed
    reason: p99 and 5xx flat after 10%
"""

RETURN = r"""
name:
  description: The deploy lock's SSM parameter name.
  returned: always
  type: str
  sample: /sampleapp/prod/deploy-lock
run_id:
  description: The run paused (or answered).
  returned: success
  type: str
answer:
  description: V(resumed), V(aborted) or V(timed_out) (V(paused) only); the answer written (V(resumed), V(aborted)).
  returned: success
  type: str
  sample: resumed
proceed:
  description: Whether the rollout goes on (V(resumed)).
  returned: success
  type: bool
checkpoint:
  description: The checkpoint's entry in the lock's record, as it stands now.
  returned: success
  type: dict
  sample: {number: 1, batch: 3, percents: [10], hosts_done: 12, hosts_total: 96, paused_at: "2026-12-01T06:00:00Z",
           state: resumed, answered_by: ops@bastion, answered_at: "2026-12-01T06:20:13Z", reason: p99 flat}
stop:
  description:
    - With V(paused), when the rollout does not go on, why, as the C(ec2fleet.fleet.rollback_batches) filter
      and C(ec2fleet.fleet.deploy_report) take it (C(kind) V(abort) or V(timeout), C(reason), C(fired_at)); null otherwise.
  returned: success
  type: dict
  sample: {kind: abort, reason: "checkpoint 1 (10%) aborted by ops@bastion: 5xx doubled", fired_at: "2026-12-01T06:20:13Z"}
waited:
  description: With V(paused), seconds spent waiting.
  returned: success
  type: float
"""

import getpass
import socket
import time
from datetime import datetime, timezone

from ansible_collections.ec2fleet.fleet.plugins.module_utils.aws import AwsCalls
from ansible_collections.ec2fleet.fleet.plugins.module_utils.deploy import DeployError, argument_spec, run_module
from ansible_collections.ec2fleet.fleet.plugins.module_utils.lock_store import (
    LOCK_OPTION_RULES,
    LOCK_OPTIONS,
    LockStore,
    describe_holder,
    extend,
    iso,
    lock_name,
    parse_time,
    store_data,
)

KEY = "checkpoint"
PAUSED = "paused"
RESUMED = "resumed"
ABORTED = "aborted"
TIMED_OUT = "timed_out"
ANSWERS = {"resumed": RESUMED, "aborted": ABORTED}
# The lock's expiry is pushed at least this often while waiting (and every quarter of its ttl).
EXTEND_EVERY = 60


# --- pure decisions ---------------------------------------------------------------------------

def pause_entry(params, now):
    return {"number": params["number"], "batch": params["batch"], "percents": list(params["percents"] or []),
            "hosts_done": params["hosts_done"], "hosts_total": params["hosts_total"], "paused_at": iso(now),
            "state": PAUSED, "answered_by": None, "answered_at": None, "reason": ""}


def entry_of(lock):
    entry = ((lock or {}).get("data") or {}).get(KEY) if isinstance(lock, dict) else None
    return entry if isinstance(entry, dict) else None


def where(entry):
    """``checkpoint 2 (50%, after batch 6)`` for messages."""
    percents = ", ".join(f"{p}%" for p in entry.get("percents") or [])
    batch = f"after batch {entry['batch']}" if entry.get("batch") else ""
    detail = ", ".join(x for x in (percents, batch) if x)
    return f"checkpoint {entry.get('number', '?')}" + (f" ({detail})" if detail else "")


def refusal(lock, name, params, now):
    """Why the operator's answer may not be written, in one line; None when it may."""
    if lock is None:
        return f"no deploy holds {name}: nothing is paused at a checkpoint"
    expires = parse_time(lock.get("expires_at"))
    if expires is None or expires <= now:
        return (describe_holder(name, lock) + ": its lock has expired, so its run is gone and nothing waits at a "
                "checkpoint (finish it with playbooks/deploy-recover.yml)")
    if params["run_id"] and lock.get("run_id") != params["run_id"]:
        return describe_holder(name, lock) + f", not by run {params['run_id']}"
    entry = entry_of(lock)
    if entry is None:
        return describe_holder(name, lock) + ": it is not paused at a checkpoint"
    if params["number"] is not None and entry.get("number") != params["number"]:
        return (describe_holder(name, lock) + f": it is at {where(entry)} ({entry.get('state')}), "
                f"not checkpoint {params['number']}")
    if entry.get("state") != PAUSED and entry.get("state") != ANSWERS[params["state"]]:
        by = f" by {entry['answered_by']}" if entry.get("answered_by") else ""
        at = f" at {entry['answered_at']}" if entry.get("answered_at") else ""
        return describe_holder(name, lock) + f": {where(entry)} was {entry.get('state', '?').replace('_', ' ')}{by}{at}"
    return None


def answered(entry, answer, by, reason, now):
    return dict(entry, state=answer, answered_by=by, answered_at=iso(now), reason=reason or "")


def stop_of(entry):
    """The stop (rollback_batches' input) a checkpoint's end means, None when the rollout goes on."""
    if entry["state"] == ABORTED:
        note = f": {entry['reason']}" if entry.get("reason") else ""
        return {"kind": "abort", "reason": f"{where(entry)} aborted by {entry.get('answered_by') or '?'}{note}",
                "fired_at": entry.get("answered_at")}
    if entry["state"] == TIMED_OUT:
        return {"kind": "timeout", "fired_at": entry.get("answered_at"),
                "reason": f"nobody resumed {where(entry)} within {entry.get('timeout', '?')} s"}
    return None


# --- the record ---------------------------------------------------------------------------------

def write_entry(store, run_id, stored, version, change):
    """Write ``change(entry)`` (the new entry, or None to leave the record as it is) into the lock of
    run ``run_id``, on top of any concurrent write of that run. Returns the entry now stored."""
    outcome = {}

    def lock_of(source):
        holder, unreadable = store.resolve(source)
        if unreadable:
            raise DeployError(f"deploy lock {store.name}: the data of {', '.join(unreadable)} in its continuation "
                              f"parameters cannot be read back; not writing the checkpoint")
        new = change(entry_of(holder))
        outcome["entry"] = new if new is not None else entry_of(holder)
        if new is None:
            return holder
        return dict(holder, data=dict(holder.get("data") or {}, **{KEY: new}))

    result, value, _written, _reapplied, _refs = store_data(store, run_id, stored, version, store.last_raw, lock_of)
    if result == "released":
        raise DeployError(f"deploy lock {store.name} was released meanwhile: the deploy is over")
    if result == "taken_over":
        raise DeployError(describe_holder(store.name, value) + f" since it was read; run {run_id} no longer holds it")
    return outcome["entry"]


def holder_of(store, stored):
    """The lock as stored, with only its checkpoint entry read back of the values kept in
    continuation parameters (the other data is left out: nothing here reads it)."""
    refs = stored.get("parts") if isinstance(stored, dict) and isinstance(stored.get("parts"), dict) else {}
    return store.resolve(stored, skip=set(refs) - {KEY})[0]


def read_entry(store):
    """(the holder's run id, its checkpoint entry) from one read of the lock; (None, None) when there
    is none. One poll is one GetParameter, whatever the data (holder_of)."""
    stored, _version = store.read()
    if not isinstance(stored, dict):
        return None, None
    holder = holder_of(store, stored)
    return holder.get("run_id"), entry_of(holder)


# --- the two sides ------------------------------------------------------------------------------

def wait(module, store, sleep=time.sleep, monotonic=time.monotonic, clock=None):
    """The deploy's side: record the pause, wait for the answer, extend the lock meanwhile."""
    params = module.params
    clock = clock or (lambda: datetime.now(timezone.utc))
    run_id, number, ttl = params["run_id"], params["number"], params["ttl"]
    base = dict(name=store.name, run_id=run_id, waited=0.0)
    with store.mutex():
        stored, version = store.read()
        if stored is None:
            raise DeployError(f"deploy lock {store.name} is not held by anyone: run {run_id} cannot pause in it")
        if not isinstance(stored, dict) or stored.get("run_id") != run_id:
            raise DeployError(describe_holder(store.name, holder_of(store, stored)) + f", not by run {run_id}; not pausing")
        current = entry_of(holder_of(store, stored))
        if current and current.get("number") == number and current.get("state") != PAUSED:
            return finish(base, current, changed=False)  # answered already: a retried task
        if module.check_mode:
            entry = pause_entry(params, clock())
            return dict(base, changed=True, answer=RESUMED, proceed=True, checkpoint=entry, stop=None,
                        msg=f"would pause at {where(entry)} and wait up to {params['timeout']} s for an operator")
        if current and current.get("number") == number:
            entry = current  # paused already by a retried task: go on waiting
        else:
            entry = write_entry(store, run_id, stored, version, lambda _old: pause_entry(params, clock()))
    started = monotonic()
    deadline = started + params["timeout"]
    every = max(1, min(EXTEND_EVERY, ttl // 4))
    next_extend = started + every
    while True:
        now = monotonic()
        if now >= deadline:
            break
        sleep(max(0.0, min(params["poll_interval"], deadline - now, next_extend - now)))
        if monotonic() >= next_extend:
            outcome, value, _again = extend(store, run_id, ttl)
            if outcome == "released":
                raise DeployError(f"deploy lock {store.name} was released while run {run_id} waited at {where(entry)}")
            if outcome == "taken_over":
                raise DeployError(describe_holder(store.name, value) + f": run {run_id} lost it while waiting at "
                                  f"{where(entry)}")
            next_extend = monotonic() + every
        holder_run, seen = read_entry(store)
        if holder_run != run_id:
            raise DeployError(f"deploy lock {store.name} is no longer held by run {run_id} (waiting at {where(entry)})")
        if seen and seen.get("number") == number and seen.get("state") != PAUSED:
            return finish(dict(base, waited=round(monotonic() - started, 2)), seen, changed=True)
    # Timed out: recorded unless an answer came in at the last moment (then it wins).
    with store.mutex():
        stored, version = store.read()
        if not isinstance(stored, dict) or stored.get("run_id") != run_id:
            raise DeployError(f"deploy lock {store.name} is no longer held by run {run_id} (waiting at {where(entry)})")

        def time_out(old):
            if old and old.get("number") == number and old.get("state") == PAUSED:
                return dict(answered(old, TIMED_OUT, None, "", clock()), timeout=params["timeout"])
            return None

        seen = write_entry(store, run_id, stored, version, time_out)
    return finish(dict(base, waited=round(monotonic() - started, 2)), seen, changed=True)


def finish(base, entry, changed):
    state = entry.get("state")
    verbs = {RESUMED: "resumed", ABORTED: "aborted", TIMED_OUT: "timed out (nobody answered)"}
    by = f" by {entry['answered_by']}" if entry.get("answered_by") else ""
    note = f": {entry['reason']}" if entry.get("reason") else ""
    return dict(base, changed=changed, answer=state, proceed=state == RESUMED, checkpoint=entry, stop=stop_of(entry),
                msg=f"{where(entry)} {verbs.get(state, state)}{by}{note}")


def answer(module, store, clock=None):
    """The operator's side: write resumed or aborted into the paused run's record."""
    params = module.params
    clock = clock or (lambda: datetime.now(timezone.utc))
    wanted = ANSWERS[params["state"]]
    by = params["by"] or f"{getpass.getuser()}@{socket.gethostname()}"
    with store.mutex():
        stored, version = store.read()
        holder = holder_of(store, stored) if stored is not None else None
        if holder is not None and not isinstance(holder, dict):
            raise DeployError(describe_holder(store.name, holder))
        problem = refusal(holder, store.name, params, clock())
        if problem:
            raise DeployError(problem)
        entry = entry_of(holder)
        base = dict(name=store.name, run_id=holder.get("run_id"), answer=wanted, proceed=wanted == RESUMED)
        if entry.get("state") == wanted:
            return dict(base, changed=False, checkpoint=entry, msg=f"{where(entry)} was {wanted} already")
        if module.check_mode:
            return dict(base, changed=True, checkpoint=answered(entry, wanted, by, params["reason"], clock()),
                        msg=f"would answer {where(entry)} of run {holder.get('run_id')}: {wanted}")
        number = entry.get("number")

        def give(old):
            if old and old.get("number") == number and old.get("state") == PAUSED:
                return answered(old, wanted, by, params["reason"], clock())
            return None

        written = write_entry(store, holder.get("run_id"), stored, version, give)
    if written.get("state") != wanted or written.get("number") != number:
        raise DeployError(f"{where(entry)} of run {holder.get('run_id')} was {written.get('state', '?').replace('_', ' ')} "
                          f"meanwhile; not answering it")
    return dict(base, changed=True, checkpoint=written,
                msg=f"{where(written)} of run {holder.get('run_id')} ({holder.get('version') or '?'}, "
                    f"{holder.get('owner', '?')}) {wanted} by {by}")


ARGUMENT_SPEC = argument_spec(
    **LOCK_OPTIONS,
    state={"type": "str", "choices": ["paused", "resumed", "aborted"], "default": "paused"},
    run_id={"type": "str"},
    number={"type": "int"},
    batch={"type": "int"},
    percents={"type": "list", "elements": "int", "default": []},
    hosts_done={"type": "int"},
    hosts_total={"type": "int"},
    timeout={"type": "int", "default": 3600},
    poll_interval={"type": "int", "default": 5},
    ttl={"type": "int", "default": 600},
    by={"type": "str"},
    reason={"type": "str", "default": ""},
)


def run(module):
    params = module.params
    if params["state"] == "paused":
        if not params["run_id"] or params["number"] is None or params["number"] < 1:
            raise DeployError("state=paused needs run_id (the run holding the lock) and number (1 or more)")
        if not 0 < params["poll_interval"] < params["timeout"]:
            raise DeployError(f"poll_interval must be positive and less than timeout ({params['timeout']} s), "
                              f"got {params['poll_interval']}")
        if params["ttl"] <= 0:
            raise DeployError(f"ttl must be a positive number of seconds, got {params['ttl']}")
    store = LockStore(AwsCalls(params), lock_name(params), params["tier"])
    return wait(module, store) if params["state"] == "paused" else answer(module, store)


def main():
    run_module(run, ARGUMENT_SPEC, **LOCK_OPTION_RULES)


if __name__ == "__main__":
    main()

#!/usr/bin/python
"""Ansible module: a deploy lock in SSM Parameter Store (acquire, update, release, recover)."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: deploy_lock
short_description: Take, update, keep alive and release a deploy lock kept in SSM Parameter Store
description:
  - Keeps one deploy lock per application and environment in an SSM Parameter Store C(String)
    parameter (default name C(/<app>/<env>/deploy-lock)) whose value is JSON, so two operators
    cannot deploy the same service at once.
  - The value records C(owner) (user@controller), C(controller) (host name, with its
    C(machine_id) where the OS has one), C(pid) (the
    C(ansible-playbook) process holding it, with its start time C(pid_started) so a reused PID is
    not mistaken for it), C(version) being deployed, C(started_at), C(expires_at), C(ttl),
    C(run_id), C(heartbeat_at) (the last heartbeat, once there was one) and a free C(data) dict
    (the deploy keeps in it the ASG processes it suspended, the group sizes it changed and the
    instances it put in Standby, so a later run can clean up after a killed one).
  - O(state=acquired) creates the parameter atomically (C(PutParameter) without overwrite). When
    it exists, the lock is taken over if it has expired, if it was taken on this same controller
    by a process that is no longer running (a killed C(ansible-playbook)), or with O(force=true);
    the previous value is then returned as RV(recovered) so the playbook can finish that run's
    cleanup. Otherwise the module fails naming the holder (owner, version, start, expiry).
    Acquiring again with the same O(run_id) is a no-op.
  - O(state=updated) merges O(data) into the lock and extends its expiry by O(ttl), only while
    this run (O(run_id)) still holds it. O(state=released) deletes it (and its continuation
    parameters), only when this run holds it (or with O(force=true)).
  - "O(state=heartbeat) keeps this run's lock alive while the deploy runs. Start it once, right
    after taking the lock, as an asynchronous task (C(async) a little longer than
    O(heartbeat_max_seconds), C(poll: 0)). Every O(heartbeat_interval) seconds it sets
    C(expires_at) to now + O(ttl) (never earlier than it was) and C(heartbeat_at) to now, as long
    as this run holds the lock and the process recorded in it (C(pid), C(pid_started): the deploy's
    C(ansible-playbook), on this controller) is running. It ends, without failing, when the lock is
    released (RV(stopped=released)), when another run holds it (RV(stopped=taken_over)), when that
    process is gone (RV(stopped=process_gone); a killed deploy's lock then expires O(ttl) seconds
    after the last beat) or after O(heartbeat_max_seconds) (RV(stopped=max_seconds)). A beat that
    fails on AWS errors (after the client's retries) is tried again at the next interval. With a
    heartbeat the O(ttl) can be short (a few minutes: a crashed run blocks other controllers that
    long) while a batch may take longer than the O(ttl)."
  - "Large data: when the value would exceed the tier's limit (C(Standard) 4096 bytes, C(Advanced)
    8192, measured on the stored JSON, minus 64 bytes kept free for the heartbeat), the largest
    values of C(data) (such as C(standby), a list that grows with the batch size, or C(capacity))
    are moved, largest first until the rest fits, to continuation parameters
    C(<name>/part-1), C(<name>/part-2)... (same tier, each within its limit, numbered from 1
    without gaps). A moved value's stored JSON text is cut into consecutive pieces, one per part,
    and the lock's value keeps, instead of that key of C(data), a top-level C(parts) map
    C({key: [[part number, part version, digest], ...]}): the parameter version of each part
    (read with a C(name:version) selector) and the first 12 hex digits of the SHA-256 of its
    text. Every result gives the data back whole (RV(lock), RV(recovered), RV(holder)); the
    C(parts) map is never returned. The main value stays within the limit whatever the data: 5,000
    instance ids take 27 parts and about 1.6 KB of it; the Standard tier holds about 24,000 ids
    (some 130 parts), the Advanced tier about 100,000; beyond, the module fails before writing
    anything."
  - "Writing parts: the parts are written before the lock's value that pins them, and only the
    parts whose digest changed are written (an update that leaves a value alone writes no part);
    parts no longer referenced are deleted after the value is written, highest number first. A
    crash between the two leaves the old value pinning the old versions of its parts, still in
    their history, so it reads back as it was; the new versions are never seen. Only the run
    holding the lock writes parts (a lock taken with large data is created without it, then
    completed); O(state=released) first rewrites the lock without its C(parts) map, then deletes
    the parts (and any an interrupted run left), then the lock. A part read back whose digest is
    not the pinned one is looked for in its history; when it cannot be found, taking the lock over
    needs O(force=true) (the data of that value cannot be returned)."
  - "Race handling: creating the lock is atomic. Taking over an expired or stale lock is a
    read-then-overwrite: SSM has no conditional overwrite, so the module checks that the version
    its write produced directly follows the version and value it read (version selectors on the
    parameter history). When two runs take over at the same moment, the one whose write came first
    wins; the other sees the gap, puts the winner's value back and fails. For the few milliseconds
    between the loser's write and its restore the value names the loser; a winner's
    O(state=updated) in that window fails safely (it never overwrites a lock it does not hold)."
  - "Updates and heartbeats of one run never lose each other's writes: each reads the value and its
    version, writes, and checks in the history that its write directly followed the value read
    (copies of its own value in between are retries of its own write). When another write of the
    same run came in between (the heartbeat beating while the deploy updates), it applies its change
    again on top of that newer value and writes again, until a write is clean. When another run's
    write came in between (the lock had expired and was taken over), it puts that value back and
    fails (O(state=updated)) or stops (O(state=heartbeat)); when the lock was released in between,
    it deletes the value its write re-created. On one controller these read-modify-write cycles are
    also serialised by C(flock) on a file in the temp directory, so the repair is only ever needed
    across controllers."
  - Runs on the controller (delegate the task to C(localhost), C(run_once)); supports check mode
    (nothing is written; the heartbeat only checks that it could run).
version_added: "0.1.0"
author: ec2-fleet project (!UNKNOWN)
extends_documentation_fragment:
  - ec2fleet.fleet.aws
  - ec2fleet.fleet.aws.retries
options:
  name:
    description: Name of the SSM parameter. Default C(/<app>/<env>/deploy-lock) from O(app) and O(env).
    type: str
  app:
    description: Application name, used to build the default O(name).
    type: str
  env:
    description: Environment name, used to build the default O(name).
    type: str
  state:
    description: V(acquired), V(updated), V(released) or V(heartbeat).
    type: str
    choices: [acquired, updated, released, heartbeat]
    default: acquired
  run_id:
    description:
      - Identifies the deploy run holding the lock. For V(acquired), a new one is generated when
        omitted (returned as RV(run_id)); V(updated), V(heartbeat) and V(released) need the one
        V(acquired) returned.
    type: str
  version:
    description: The version being deployed (recorded for whoever finds the lock held).
    type: str
    default: ""
  ttl:
    description:
      - Seconds until the lock expires and another run may take it over. V(updated) and each beat
        of V(heartbeat) extend the expiry to now + O(ttl). With a heartbeat, a few minutes (600 with
        a 60 s O(heartbeat_interval)); without one, longer than any batch takes.
    type: int
    default: 3600
  heartbeat_interval:
    description:
      - With V(heartbeat), seconds between two extensions of the expiry; shorter than O(ttl)
        (a tenth of it leaves room for several failed beats).
    type: int
    default: 60
  heartbeat_max_seconds:
    description:
      - With V(heartbeat), the longest it runs, whatever happens (set the task's C(async) a little
        above it). After it, the lock expires O(ttl) seconds after the last beat unless the deploy
        updates it.
    type: int
    default: 86400
  data:
    description:
      - Free data stored with the lock. With V(acquired), the initial data; with V(updated), merged
        into the stored data (top-level keys replaced). Values that do not fit in the lock's value
        are kept in continuation parameters (see above), transparently.
    type: dict
    default: {}
  owner:
    description: Who holds the lock. Default C(<user>@<controller host>).
    type: str
  pid:
    description:
      - PID recorded as the holder. Default the outermost C(ansible-playbook) (or C(ansible))
        process above this module, so a killed run is recognised as stale.
      - With V(heartbeat), the process whose life the heartbeat follows; default the one recorded
        in the lock (which must then have been taken on this controller).
    type: int
  force:
    description:
      - V(acquired) takes the lock over even when a live run holds it (or when the data of the run
        it takes over cannot be read back); V(released) deletes it whoever holds it. For operators
        clearing a lock by hand.
    type: bool
    default: false
  takeover_run_id:
    description:
      - With V(acquired), take the lock over when, and only when, it is held by this run id, live
        or not, from any controller (the holder's C(run_id) is in the lock's value and in the
        failed deploy's message). For an operator recovering a stopped or interrupted deploy
        from another controller (C(playbooks/deploy-recover.yml)); the previous value is returned
        as RV(recovered). Fails naming the holder when another run holds the lock.
    type: str
  tier:
    description:
      - SSM parameter tier of the lock and its continuation parameters; V(Standard) holds up to
        4 KB per parameter, V(Advanced) up to 8 KB (charged per parameter and month).
    type: str
    choices: [Standard, Advanced]
    default: Standard
notes:
  - "IAM: C(ssm:GetParameter), C(ssm:PutParameter), C(ssm:DeleteParameter) and
    C(ssm:GetParameterHistory) on the parameter and on its continuation parameters, for example
    C(arn:aws:ssm:*:*:parameter/*/deploy-lock) and C(arn:aws:ssm:*:*:parameter/*/deploy-lock/part-*).
    Version selectors (C(name:3)) need no other action."
  - "Throttling: every call goes through the client's retries (O(retry_mode), O(max_attempts)).
    An update writes only the parts whose content changed, one after the other, then the value
    (one C(PutParameter)) and reads one version back; a beat is one read, one write and one read
    back. PutParameter's default throughput is low: with very large data, O(retry_mode=adaptive)
    paces the writes."
"""

EXAMPLES = r"""
- name: Take the deploy lock
  ec2fleet.fleet.deploy_lock:
    app: sampleapp
    env: prod
    version: "{{ app_version }}"
    ttl: 600
  delegate_to: localhost
  run_once: true
  register: deploy_lock

- name: Keep it alive while this deploy runs (stops by itself on release or when the deploy dies)
  ec2fleet.fleet.deploy_lock:
    app: sampleapp
    env: prod
    state: heartbeat
    run_id: "{{ deploy_lock.run_id }}"
    ttl: 600
    heartbeat_interval: 60
    heartbeat_max_seconds: 86400
  async: 86700
  poll: 0
  delegate_to: localhost
  run_once: true
  changed_when: false

- name: Remember what this run changed, for crash recovery (any size)
  ec2fleet.fleet.deploy_lock:
    app: sampleapp
    env: prod
    state: updated
    run_id: "{{ deploy_lock.run_id }}"
    ttl: 600
    data:
      suspended: {web: "{{ web_processes.suspended_now }}"}
      standby: ["i-0123456789abcdef0"]
  delegate_to: localhost
  run_once: true

- name: Release it
  ec2fleet.fleet.deploy_lock:
    app: sampleapp
    env: prod
    state: released
    run_id: "{{ deploy_lock.run_id }}"
  delegate_to: localhost
  run_once: true
"""

RETURN = r"""
name:
  description: The SSM parameter name.
  returned: always
  type: str
  sample: /sampleapp/prod/deploy-lock
run_id:
  description: The run holding the lock (generated by V(acquired) when not given).
  returned: always
  type: str
  sample: 7d0c2b7e4f1a4f7e9b0b6f1f3c3c2a11
lock:
  description:
    - The lock value now stored, with all its data (in check mode, that would be stored); empty
      after release. With V(heartbeat), the last value it wrote or saw.
  returned: always
  type: dict
  sample: {owner: ops@controller, controller: controller, pid: 4242, version: "2.0.0",
           started_at: "2026-11-23T08:00:00Z", expires_at: "2026-11-23T09:00:00Z",
           ttl: 3600, run_id: 7d0c2b7e, data: {}}
recovered:
  description:
    - The previous holder's value, with all its data, when this call took over an expired or stale
      lock (or forced), so the playbook can finish that run's cleanup; null otherwise.
  returned: always
  type: dict
  sample: {owner: ops@controller, pid: 4100, data: {standby: [i-0123456789abcdef0]}}
holder:
  description: The current holder's value when the lock is refused.
  returned: failed
  type: dict
parameter_version:
  description: The parameter version after this call (null when absent, in check mode, or with V(heartbeat)).
  returned: always
  type: int
  sample: 3
parts:
  description: The continuation parameters the stored value uses (V(acquired), V(updated)).
  returned: always
  type: list
  elements: str
  sample: [/sampleapp/prod/deploy-lock/part-1, /sampleapp/prod/deploy-lock/part-2]
parts_written:
  description: How many continuation parameters this update wrote (those whose content changed).
  returned: when state is updated and not in check mode
  type: int
  sample: 1
reapplied:
  description:
    - How many times a write was applied again on top of a concurrent write of the same run
      (V(updated), V(heartbeat)).
  returned: when state is updated or heartbeat
  type: int
  sample: 0
stopped:
  description:
    - Why the heartbeat ended. V(released) (the lock is gone), V(taken_over) (another run holds
      it), V(process_gone) (the deploy's process ended), V(max_seconds), or V(check_mode).
  returned: when state is heartbeat
  type: str
  sample: released
beats:
  description: How many times the heartbeat extended the expiry.
  returned: when state is heartbeat
  type: int
  sample: 42
heartbeat_errors:
  description: Beats that failed on AWS errors and were tried again at the next interval.
  returned: when state is heartbeat
  type: int
  sample: 0
last_error:
  description: The last of those errors.
  returned: when a beat failed
  type: str
"""

import getpass
import os
import socket
import time
import uuid
from datetime import datetime, timedelta, timezone

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.ec2fleet.fleet.plugins.module_utils.aws import AwsCalls
from ansible_collections.ec2fleet.fleet.plugins.module_utils.deploy import DeployError, argument_spec
from ansible_collections.ec2fleet.fleet.plugins.module_utils.lock_store import (
    LOCK_OPTION_RULES,
    LOCK_OPTIONS,
    LockStore,
    describe_holder,
    extend,
    holder_write,
    iso,
    lock_name,
    parse_time,
    part_names,
    part_numbers,
    store_data,
    strip_refs,
)

PLAYBOOK_COMMANDS = ("ansible-playbook", "ansible")


# --- the holder process ------------------------------------------------------------------------

def _proc_fields(pid):
    """The fields of /proc/<pid>/stat after the command name (state first), or None."""
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8") as handle:
            return handle.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError, ValueError):
        return None


def _proc_stat(pid):
    """(parent pid, start time in clock ticks) from /proc, or None."""
    fields = _proc_fields(pid)
    try:
        return int(fields[1]), fields[19]
    except (TypeError, IndexError, ValueError):
        return None


def _proc_command(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            return [arg.decode("utf-8", "replace") for arg in handle.read().split(b"\0") if arg]
    except OSError:
        return []


def process_start(pid):
    """The process's start time (an opaque string) where the OS tells it, else None."""
    stat = _proc_stat(pid)
    return stat[1] if stat else None


def controller_process():
    """The outermost ansible-playbook/ansible process above this one: the run holding the lock.

    Ansible's workers are forks of the main process (same command line), so the outermost match is
    the main one. Without /proc (a macOS controller) the parent PID is used.
    """
    found = None
    pid = os.getppid()
    for _depth in range(64):
        stat = _proc_stat(pid)
        if stat is None:
            break
        if any(os.path.basename(arg) in PLAYBOOK_COMMANDS for arg in _proc_command(pid)[:2]):
            found = pid
        if stat[0] <= 1:
            break
        pid = stat[0]
    return found if found is not None else os.getppid()


def machine_id():
    """This controller's machine ID (systemd/dbus), so two hosts with the same name are not
    confused; None where the OS has none."""
    for path in ("/etc/machine-id", "/var/lib/dbus/machine-id"):
        try:
            with open(path, encoding="utf-8") as handle:
                value = handle.read().strip()
            if value:
                return value
        except OSError:
            continue
    return None


def process_alive(pid, started=None):
    """Is the process that took the lock still running (and not a reused PID, nor a zombie)?"""
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    except (TypeError, ValueError, OverflowError):
        return False
    fields = _proc_fields(pid)
    if fields and fields[0] in ("Z", "X"):  # exited, not yet reaped by its parent
        return False
    if started:
        now = process_start(pid)
        if now is not None and now != started:
            return False
    return True


# --- pure decisions ---------------------------------------------------------------------------

def judge(holder, run_id, controller, now, alive=process_alive, machine=None):
    """Why the lock as it stands may or may not be taken: ``(verdict, reason)``.

    verdict is ``ours`` (this run holds it), ``expired``, ``stale`` (its process on this
    controller is gone) or ``held``. "This controller" means the same host name and, when both
    sides know it, the same machine ID. Expiry compares this controller's clock with the one that
    wrote ``expires_at``: keep controllers on NTP.
    """
    if not isinstance(holder, dict):
        return "held", "the lock value is not a JSON object"
    if run_id and holder.get("run_id") == run_id:
        return "ours", "this run holds it"
    expires = parse_time(holder.get("expires_at"))
    if expires is not None and expires <= now:
        return "expired", f"expired at {holder.get('expires_at')}"
    if on_this_controller(holder, controller, machine) and holder.get("pid") is not None \
            and not alive(holder.get("pid"), holder.get("pid_started")):
        return "stale", f"its process {holder.get('pid')} on {controller} is no longer running"
    if expires is None:
        return "held", "it has no readable expiry"
    return "held", "it is held by a live run"


def on_this_controller(holder, controller, machine):
    same_machine = not (machine and holder.get("machine_id")) or holder.get("machine_id") == machine
    return holder.get("controller") == controller and same_machine


def new_lock(params, run_id, controller, pid, now):
    return {
        "owner": params["owner"] or f"{getpass.getuser()}@{controller}",
        "controller": controller,
        "machine_id": machine_id(),
        "pid": pid,
        "pid_started": process_start(pid),
        "version": params["version"],
        "started_at": iso(now),
        "expires_at": iso(now + timedelta(seconds=params["ttl"])),
        "ttl": params["ttl"],
        "run_id": run_id,
        "data": dict(params["data"] or {}),
    }


def updated_lock(holder, params, now):
    lock = dict(holder)
    lock["data"] = {**(holder.get("data") or {}), **(params["data"] or {})}
    lock["ttl"] = params["ttl"]
    lock["expires_at"] = iso(now + timedelta(seconds=params["ttl"]))
    return lock


# --- states ----------------------------------------------------------------------------------

def acquire(module, store, now):
    params = module.params
    controller = socket.gethostname()
    run_id = params["run_id"] or uuid.uuid4().hex
    pid = params["pid"] or controller_process()
    lock = new_lock(params, run_id, controller, pid, now)
    # A lock whose data needs parts is first written without the moved values, and completed once
    # this run holds it: only the holder ever writes parts.
    seed, moved = store.plan(lock)
    result = dict(name=store.name, run_id=run_id, lock=lock, recovered=None, parameter_version=None, parts=[])

    stored, version = store.read()
    if stored is None:
        if module.check_mode:
            return dict(result, changed=True, msg=f"would acquire deploy lock {store.name}")
        created = store.create(seed)
        if created is not None:
            return complete(store, result, seed, created, moved, lock, set(),
                            changed=True, msg=f"acquired deploy lock {store.name}")
        stored, version = store.read()  # someone created it between our read and our create
        if stored is None:
            raise DeployError(f"deploy lock {store.name} appeared and vanished while acquiring it; run again")
    read_raw = store.last_raw
    holder, unreadable = store.resolve(stored)

    verdict, reason = judge(holder, run_id, controller, now, machine=machine_id())
    if verdict == "ours":
        if not params["run_id"]:
            # Our own create, sent again by a retry after its answer was lost: acquired all the same.
            return complete(store, result, seed, version, moved, lock, set(), changed=True,
                            msg=f"acquired deploy lock {store.name}")
        return dict(result, changed=False, lock=holder, parameter_version=version,
                    parts=part_names(store, stored.get("parts")),
                    msg=f"deploy lock {store.name} already held by this run")
    takeover = params.get("takeover_run_id")
    if takeover and holder.get("run_id") != takeover:
        module.fail_json(msg=describe_holder(store.name, holder) + f"; it is not run {takeover}, refusing to take it over",
                         holder=holder, name=store.name, run_id=run_id, recovered=None)
    if verdict == "held" and takeover:
        verdict, reason = "requested", f"run {takeover} named by the operator"
    if verdict == "held" and not params["force"]:
        module.fail_json(msg=describe_holder(store.name, holder) + f"; refusing to deploy ({reason})",
                         holder=holder, name=store.name, run_id=run_id, recovered=None)
    if verdict == "held":
        reason = "forced"
    if unreadable and not params["force"]:
        raise DeployError(describe_holder(store.name, holder) + f"; it may be taken over ({reason}), but the data of "
                          f"{', '.join(unreadable)} in its continuation parameters {store.name}/part-* cannot be "
                          f"read back, so that run cannot be cleaned up after: check them, then take the lock "
                          f"over with force: true")
    msg = (f"took over deploy lock {store.name} from {describe_holder(store.name, holder).split(' is held by ', 1)[-1]}"
           f" ({reason}); finish that run's cleanup from 'recovered'")
    if unreadable:
        module.warn(f"the recovered data of {', '.join(unreadable)} could not be read back (forced)")
    if module.check_mode:
        return dict(result, changed=True, recovered=holder, msg="would have " + msg)
    written = store.overwrite(seed)
    # Ours only if our write directly follows the very value we judged (same version number and
    # same content: a delete and re-create in between restarts the numbering); copies of our value
    # right before ours are our own write sent again by a retry.
    # "deleted": the lock was released since we read it and our write created it afresh.
    outcome, _newer = store.follows(written, version, read_raw, store.encode(seed))
    if outcome == "between":
        # Someone else wrote between our read and our write: the first writer after the value we
        # read wins. Put its value back over ours (unless yet another write followed) and give up.
        ours = store.encode(seed)
        later = [text for text in (store.value_at(v) for v in range(version + 1, written)) if text != ours]
        winner = later[0] if later else _newer
        _current, now_version = store.read()
        if winner is not None and now_version == written:
            store.restore(winner)
        raise DeployError(f"deploy lock {store.name}: another run took it over at the same moment; "
                          f"it holds the lock now, run again to see who")
    # The run taken over may have left parts: those this lock does not reuse are deleted below.
    return complete(store, dict(result, recovered=holder), seed, written, moved, lock,
                    part_numbers(stored.get("parts")), changed=True, msg=msg)


def complete(store, result, seed, version, moved, lock, leftover, **fields):
    """After this run took the lock with ``seed``: write the values that need parts, then delete the
    parts of ``leftover`` (the previous holder's) this lock does not use."""
    refs = {}
    if moved:
        outcome, _value, version, _reapplied, refs = store_data(
            store, lock["run_id"], seed, version, store.encode(seed), lambda _source: lock)
        if outcome != "written":
            raise DeployError(f"deploy lock {store.name} was {outcome.replace('_', ' ')} while this run was "
                              f"writing its data; this run does not hold it")
    unused = set(leftover) - part_numbers(refs)
    if unused:
        store.delete_parts(unused)
    return dict(result, parameter_version=version, parts=part_names(store, refs), **fields)


def update(module, store, now):
    params = module.params
    base = dict(name=store.name, run_id=params["run_id"], recovered=None)
    with store.mutex():
        stored, version = store.read()
        raw = store.last_raw
        if stored is None:
            raise DeployError(f"deploy lock {store.name} is not held by anyone (it was released or never taken); "
                              f"not updating it")
        if not isinstance(stored, dict) or stored.get("run_id") != params["run_id"]:
            holder, _unreadable = store.resolve(stored)
            raise DeployError(describe_holder(store.name, holder) + f", not by run {params['run_id']}; not updating it")
        replaced = set(params["data"] or {})

        def lock_of(source):
            """The full updated lock: the values of data this update does not replace are read back
            from their parts (once per distinct value)."""
            holder, unreadable = store.resolve(source, skip=replaced)
            if unreadable:
                raise DeployError(f"deploy lock {store.name}: the data of {', '.join(unreadable)} in its continuation "
                                  f"parameters cannot be read back; not updating it")
            return updated_lock(holder, params, now)

        if module.check_mode:
            lock = lock_of(stored)
            return dict(base, changed=True, lock=lock, parameter_version=None, parts=[],
                        msg=f"would update deploy lock {store.name}")
        before = store.part_writes
        outcome, lock, written, reapplied, refs = store_data(store, params["run_id"], stored, version, raw, lock_of)
    if outcome == "released":
        raise DeployError(f"deploy lock {store.name} was released while this run was updating it; not updating it")
    if outcome == "taken_over":
        raise DeployError(describe_holder(store.name, lock) + f" since this run read it (expired and taken over?); "
                          f"run {params['run_id']} no longer holds it, not updating it")
    return dict(base, changed=True, lock=lock, parameter_version=written, parts=part_names(store, refs),
                parts_written=store.part_writes - before, reapplied=reapplied, msg=f"updated deploy lock {store.name}")


def release(module, store):
    params = module.params
    base = dict(name=store.name, run_id=params["run_id"], recovered=None, lock={}, parameter_version=None, parts=[])
    with store.mutex():
        stored, version = store.read()
        if stored is None:
            return dict(base, changed=False, msg=f"deploy lock {store.name} is not held")
        ours = isinstance(stored, dict) and params["run_id"] and stored.get("run_id") == params["run_id"]
        if not ours and not params["force"]:
            holder, _unreadable = store.resolve(stored)
            raise DeployError(describe_holder(store.name, holder)
                              + f", not by run {params['run_id']}; not releasing it")
        recovered = None if ours else store.resolve(stored)[0]
        if not module.check_mode:
            refs = stored.get("parts") if isinstance(stored, dict) else None
            if refs:
                # Drop the references first, so a crash midway never leaves the lock naming a part
                # already deleted; then the parts (and any an interrupted run left), then the lock.
                outcome, _value, _written, _reapplied = holder_write(
                    store, stored.get("run_id"), stored, version, store.last_raw,
                    lambda source: (strip_refs(source), store.encode(strip_refs(source))))
                if outcome == "taken_over":
                    raise DeployError(f"deploy lock {store.name} was taken over while releasing it; not releasing it")
            store.delete_all_parts(part_numbers(refs))
            store.delete()
    verb = "would release" if module.check_mode else "released"
    return dict(base, changed=True, recovered=recovered,
                msg=f"{verb} deploy lock {store.name}" + ("" if ours else " (forced)"))


def heartbeat(module, store, sleep=time.sleep, monotonic=time.monotonic):
    """Keep this run's lock alive every heartbeat_interval seconds while its process lives."""
    params = module.params
    run_id, ttl, interval = params["run_id"], params["ttl"], params["heartbeat_interval"]
    base = dict(name=store.name, run_id=run_id, recovered=None, parameter_version=None, parts=[],
                beats=0, reapplied=0, heartbeat_errors=0)
    stored, _version = store.read()
    if stored is None:
        return dict(base, changed=False, stopped="released", lock={},
                    msg=f"deploy lock {store.name} is not held (released): no heartbeat")
    if not isinstance(stored, dict) or stored.get("run_id") != run_id:
        return dict(base, changed=False, stopped="taken_over", lock=strip_refs(stored),
                    msg=describe_holder(store.name, stored) + f", not by run {run_id}: no heartbeat")
    controller = socket.gethostname()
    if params["pid"]:
        pid, started = params["pid"], process_start(params["pid"])
    elif on_this_controller(stored, controller, machine_id()) and stored.get("pid") is not None:
        pid, started = stored["pid"], stored.get("pid_started")
    else:
        raise DeployError(f"deploy lock {store.name} was taken on {stored.get('controller', '?')} (pid "
                          f"{stored.get('pid', '?')}): its heartbeat must run there (or name the process to follow "
                          f"with pid)")
    if module.check_mode:
        return dict(base, changed=False, stopped="check_mode", lock=strip_refs(stored),
                    msg=f"would keep deploy lock {store.name} alive while process {pid} runs")

    start = monotonic()
    deadline = start + params["heartbeat_max_seconds"]
    beats = reapplied = errors = 0
    last_error, stopped, value = None, None, strip_refs(stored)
    next_beat = start + interval
    while stopped is None:
        # Wait for the next beat, watching the process (a beat never follows its death).
        while stopped is None:
            if not process_alive(pid, started):
                stopped = "process_gone"
            elif monotonic() >= deadline:
                stopped = "max_seconds"
            elif monotonic() >= next_beat:
                break
            else:
                sleep(max(0.0, min(1.0, next_beat - monotonic(), deadline - monotonic())))
        if stopped:
            break
        next_beat += interval
        if next_beat <= monotonic():  # a slow beat: do not fire the missed ones in a burst
            next_beat = monotonic() + interval
        try:
            outcome, value, again = extend(store, run_id, ttl, deadline)
        except DeployError as exc:  # AWS down longer than botocore's retries: try again next beat
            errors, last_error = errors + 1, str(exc)
            continue
        reapplied += again
        if outcome == "extended":
            beats += 1
        else:
            stopped = outcome
    reasons = {
        "released": "the lock was released",
        "taken_over": "the lock is held by another run (taken over)",
        "process_gone": f"process {pid} is no longer running: the lock expires {ttl} s after the last beat",
        "max_seconds": f"heartbeat_max_seconds ({params['heartbeat_max_seconds']}) reached",
    }
    if stopped == "released":
        value = {}
    elif isinstance(value, dict) and "parts" in value:
        try:
            value = store.resolve(value)[0]
        except DeployError:
            value = strip_refs(value)
    result = dict(base, changed=beats > 0, stopped=stopped, beats=beats, reapplied=reapplied, heartbeat_errors=errors,
                  lock=value,
                  msg=f"kept deploy lock {store.name} alive ({beats} beats); stopped: {reasons[stopped]}")
    if last_error:
        result["last_error"] = last_error
    return result


ARGUMENT_SPEC = argument_spec(
    **LOCK_OPTIONS,
    state={"type": "str", "choices": ["acquired", "updated", "released", "heartbeat"], "default": "acquired"},
    run_id={"type": "str"},
    version={"type": "str", "default": ""},
    ttl={"type": "int", "default": 3600},
    data={"type": "dict", "default": {}},
    owner={"type": "str"},
    pid={"type": "int"},
    force={"type": "bool", "default": False},
    takeover_run_id={"type": "str"},
    heartbeat_interval={"type": "int", "default": 60},
    heartbeat_max_seconds={"type": "int", "default": 86400},
)


def main():
    module = AnsibleModule(
        argument_spec=ARGUMENT_SPEC,
        **LOCK_OPTION_RULES,
        required_if=[("state", "updated", ("run_id",)), ("state", "heartbeat", ("run_id",))],
        supports_check_mode=True,
    )
    params = module.params
    if params["ttl"] <= 0:
        module.fail_json(msg=f"ttl must be a positive number of seconds, got {params['ttl']}")
    if params["state"] == "released" and not params["run_id"] and not params["force"]:
        module.fail_json(msg="state=released needs the run_id that acquired the lock (or force: true)")
    if params["state"] == "heartbeat" and not 0 < params["heartbeat_interval"] < params["ttl"]:
        module.fail_json(msg=f"heartbeat_interval must be positive and shorter than ttl ({params['ttl']} s), "
                             f"got {params['heartbeat_interval']}")
    if params["heartbeat_max_seconds"] <= 0:
        module.fail_json(msg=f"heartbeat_max_seconds must be positive, got {params['heartbeat_max_seconds']}")
    name = lock_name(params)
    try:
        store = LockStore(AwsCalls(params), name, params["tier"])
        now = datetime.now(timezone.utc)
        if params["state"] == "acquired":
            result = acquire(module, store, now)
        elif params["state"] == "updated":
            result = update(module, store, now)
        elif params["state"] == "heartbeat":
            result = heartbeat(module, store)
        else:
            result = release(module, store)
    except DeployError as exc:
        module.fail_json(msg=str(exc), name=name)
    module.exit_json(**result)


if __name__ == "__main__":
    main()

#!/usr/bin/python
"""Ansible module: a deploy lock in SSM Parameter Store (acquire, update, release, recover)."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: deploy_lock
short_description: Take, update and release a deploy lock kept in SSM Parameter Store
description:
  - Keeps one deploy lock per application and environment in an SSM Parameter Store C(String)
    parameter (default name C(/<app>/<env>/deploy-lock)) whose value is JSON, so two operators
    cannot deploy the same service at once.
  - The value records C(owner) (user@controller), C(controller) (host name, with its
    C(machine_id) where the OS has one), C(pid) (the
    C(ansible-playbook) process holding it, with its start time C(pid_started) so a reused PID is
    not mistaken for it), C(version) being deployed, C(started_at), C(expires_at), C(ttl),
    C(run_id) and a free C(data) dict (the deploy keeps in it the ASG processes it suspended and
    the instances it put in Standby, so a later run can clean up after a killed one).
  - O(state=acquired) creates the parameter atomically (C(PutParameter) without overwrite). When
    it exists, the lock is taken over if it has expired, if it was taken on this same controller
    by a process that is no longer running (a killed C(ansible-playbook)), or with O(force=true);
    the previous value is then returned as RV(recovered) so the playbook can finish that run's
    cleanup. Otherwise the module fails naming the holder (owner, version, start, expiry).
    Acquiring again with the same O(run_id) is a no-op.
  - O(state=updated) merges O(data) into the lock and extends its expiry by O(ttl), only while
    this run (O(run_id)) still holds it. O(state=released) deletes it, only when this run holds
    it (or with O(force=true)).
  - "Race handling: creating the lock is atomic. Taking over an expired or stale lock is a
    read-then-overwrite: SSM has no conditional overwrite, so the module checks that the version
    its write produced directly follows the version and value it read (parameter history). When
    two runs take over at the same moment, the one whose write came first wins; the other sees the gap, puts the winner's value
    back and fails. For the few milliseconds between the loser's write and its restore the value
    names the loser; a winner's O(state=updated) in that window fails safely (it never
    overwrites a lock it does not hold). O(state=updated) and O(state=released) have the same
    short read-then-write window, reachable only when this run's lock had already expired."
  - Runs on the controller (delegate the task to C(localhost), C(run_once)); supports check mode.
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
    description: V(acquired), V(updated) or V(released).
    type: str
    choices: [acquired, updated, released]
    default: acquired
  run_id:
    description:
      - Identifies the deploy run holding the lock. For V(acquired), a new one is generated when
        omitted (returned as RV(run_id)); V(updated) and V(released) need the one V(acquired) returned.
    type: str
  version:
    description: The version being deployed (recorded for whoever finds the lock held).
    type: str
    default: ""
  ttl:
    description:
      - Seconds until the lock expires and another run may take it over. V(updated) extends the
        expiry to now + O(ttl).
    type: int
    default: 3600
  data:
    description:
      - Free data stored with the lock. With V(acquired), the initial data; with V(updated), merged
        into the stored data (top-level keys replaced).
    type: dict
    default: {}
  owner:
    description: Who holds the lock. Default C(<user>@<controller host>).
    type: str
  pid:
    description:
      - PID recorded as the holder. Default the outermost C(ansible-playbook) (or C(ansible))
        process above this module, so a killed run is recognised as stale.
    type: int
  force:
    description:
      - V(acquired) takes the lock over even when a live run holds it; V(released) deletes it
        whoever holds it. For operators clearing a lock by hand.
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
    description: SSM parameter tier; V(Standard) holds up to 4 KB, V(Advanced) up to 8 KB (charged).
    type: str
    choices: [Standard, Advanced]
    default: Standard
notes:
  - Needs C(ssm:GetParameter), C(ssm:PutParameter), C(ssm:DeleteParameter) and
    C(ssm:GetParameterHistory) on the parameter.
"""

EXAMPLES = r"""
- name: Take the deploy lock
  ec2fleet.fleet.deploy_lock:
    app: sampleapp
    env: prod
    version: "{{ app_version }}"
    ttl: 3600
  delegate_to: localhost
  run_once: true
  register: deploy_lock

- name: Remember what this run changed, for crash recovery
  ec2fleet.fleet.deploy_lock:
    app: sampleapp
    env: prod
    state: updated
    run_id: "{{ deploy_lock.run_id }}"
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
  description: The lock value now stored (in check mode, that would be stored); empty after release.
  returned: always
  type: dict
  sample: {owner: ops@controller, controller: controller, pid: 4242, version: "2.0.0",
           started_at: "2026-11-23T08:00:00Z", expires_at: "2026-11-23T09:00:00Z",
           ttl: 3600, run_id: 7d0c2b7e, data: {}}
recovered:
  description:
    - The previous holder's value when this call took over an expired or stale lock (or forced),
      so the playbook can finish that run's cleanup; null otherwise.
  returned: always
  type: dict
  sample: {owner: ops@controller, pid: 4100, data: {standby: [i-0123456789abcdef0]}}
holder:
  description: The current holder's value when the lock is refused.
  returned: failed
  type: dict
parameter_version:
  description: The parameter version after this call (null when absent or in check mode).
  returned: always
  type: int
  sample: 3
"""

import getpass
import json
import os
import socket
import uuid
from datetime import datetime, timedelta, timezone

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.ec2fleet.fleet.plugins.module_utils.aws import (
    FLEET_AWS_ERRORS,
    AwsCalls,
    error_code,
    format_aws_error,
)
from ansible_collections.ec2fleet.fleet.plugins.module_utils.deploy import DeployError, argument_spec

TIER_LIMITS = {"Standard": 4096, "Advanced": 8192}
PLAYBOOK_COMMANDS = ("ansible-playbook", "ansible")


# --- the holder process ------------------------------------------------------------------------

def _proc_stat(pid):
    """(parent pid, start time in clock ticks) from /proc, or None."""
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
        return int(fields[1]), fields[19]
    except (OSError, IndexError, ValueError):
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
    """Is the process that took the lock still running (and not a reused PID)?"""
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    except (TypeError, ValueError, OverflowError):
        return False
    if started:
        now = process_start(pid)
        if now is not None and now != started:
            return False
    return True


# --- pure decisions ---------------------------------------------------------------------------

def iso(moment):
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text):
    try:
        return datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    except ValueError:
        return None


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
    same_machine = not (machine and holder.get("machine_id")) or holder.get("machine_id") == machine
    if (holder.get("controller") == controller and same_machine and holder.get("pid") is not None
            and not alive(holder.get("pid"), holder.get("pid_started"))):
        return "stale", f"its process {holder.get('pid')} on {controller} is no longer running"
    if expires is None:
        return "held", "it has no readable expiry"
    return "held", "it is held by a live run"


def describe_holder(name, holder):
    if not isinstance(holder, dict):
        return f"deploy lock {name} is held (unreadable value: {str(holder)[:200]!r})"
    return (f"deploy lock {name} is held by {holder.get('owner', '?')} (pid {holder.get('pid', '?')} on "
            f"{holder.get('controller', '?')}), deploying version {holder.get('version') or '?'}, "
            f"started {holder.get('started_at', '?')}, expires {holder.get('expires_at', '?')}, "
            f"run {holder.get('run_id', '?')}")


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


# --- SSM -------------------------------------------------------------------------------------

class LockStore:
    def __init__(self, aws, name, tier):
        self.aws, self.name, self.tier = aws, name, tier
        self.last_raw = None  # the value exactly as the last read() found it

    def _fail(self, exc, action):
        raise DeployError(format_aws_error(exc, action=f"{action} deploy lock {self.name}", where=self.aws.where)) from exc

    def read(self):
        """``(value, version)``; ``(None, None)`` when there is no lock."""
        try:
            parameter = self.aws.client("ssm").get_parameter(Name=self.name)["Parameter"]
        except FLEET_AWS_ERRORS as exc:
            if error_code(exc) == "ParameterNotFound":
                return None, None
            self._fail(exc, "read")
        self.last_raw = parameter["Value"]
        try:
            value = json.loads(parameter["Value"])
        except ValueError:
            value = parameter["Value"]
        return value, parameter["Version"]

    def encode(self, lock):
        text = json.dumps(lock, sort_keys=True, separators=(",", ":"))
        limit = TIER_LIMITS[self.tier]
        if len(text.encode("utf-8")) > limit:
            raise DeployError(f"deploy lock {self.name}: value is {len(text)} bytes, over the {limit}-byte limit "
                              f"of the {self.tier} tier (keep less in data, or use tier: Advanced)")
        return text

    def create(self, lock):
        """Atomic create; None when the parameter already exists."""
        try:
            return self.aws.client("ssm").put_parameter(
                Name=self.name, Value=self.encode(lock), Type="String", Overwrite=False, Tier=self.tier,
                Description="ec2-fleet deploy lock",
            )["Version"]
        except FLEET_AWS_ERRORS as exc:
            if error_code(exc) == "ParameterAlreadyExists":
                return None
            self._fail(exc, "create")

    def overwrite(self, lock):
        try:
            return self.aws.client("ssm").put_parameter(
                Name=self.name, Value=self.encode(lock), Type="String", Overwrite=True, Tier=self.tier,
            )["Version"]
        except FLEET_AWS_ERRORS as exc:
            self._fail(exc, "write")

    def restore(self, raw_value):
        """Put back a value exactly as it was stored (after losing a takeover race)."""
        try:
            self.aws.client("ssm").put_parameter(Name=self.name, Value=raw_value, Type="String",
                                                 Overwrite=True, Tier=self.tier)
        except FLEET_AWS_ERRORS as exc:
            self._fail(exc, "restore")

    def version_value(self, version):
        """The value stored at one version (from the parameter history), or None."""
        try:
            pages = self.aws.client("ssm").get_paginator("get_parameter_history").paginate(Name=self.name)
            for page in pages:
                for item in page["Parameters"]:
                    if item["Version"] == version:
                        return item["Value"]
        except FLEET_AWS_ERRORS as exc:
            self._fail(exc, "read the history of")
        return None

    def delete(self):
        try:
            self.aws.client("ssm").delete_parameter(Name=self.name)
        except FLEET_AWS_ERRORS as exc:
            if error_code(exc) != "ParameterNotFound":
                self._fail(exc, "delete")


# --- states ----------------------------------------------------------------------------------

def acquire(module, store, now):
    params = module.params
    controller = socket.gethostname()
    run_id = params["run_id"] or uuid.uuid4().hex
    pid = params["pid"] or controller_process()
    lock = new_lock(params, run_id, controller, pid, now)
    result = dict(name=store.name, run_id=run_id, lock=lock, recovered=None, parameter_version=None)

    holder, version = store.read()
    if holder is None:
        if module.check_mode:
            return dict(result, changed=True, msg=f"would acquire deploy lock {store.name}")
        created = store.create(lock)
        if created is not None:
            return dict(result, changed=True, parameter_version=created, msg=f"acquired deploy lock {store.name}")
        holder, version = store.read()  # someone created it between our read and our create
        if holder is None:
            raise DeployError(f"deploy lock {store.name} appeared and vanished while acquiring it; run again")

    verdict, reason = judge(holder, params["run_id"], controller, now, machine=machine_id())
    if verdict == "ours":
        return dict(result, changed=False, lock=holder, parameter_version=version,
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
    msg = (f"took over deploy lock {store.name} from {describe_holder(store.name, holder).split(' is held by ', 1)[-1]}"
           f" ({reason}); finish that run's cleanup from 'recovered'")
    if module.check_mode:
        return dict(result, changed=True, recovered=holder, msg="would have " + msg)
    read_raw = store.last_raw
    written = store.overwrite(lock)
    # Ours only if our write directly follows the very value we judged (same version number and
    # same content: a delete and re-create in between restarts the numbering).
    # Version 1: the lock was released since we read it and our write created it afresh.
    predecessor = store.version_value(written - 1) if written > 1 else None
    if written > 1 and (written != version + 1 or predecessor != read_raw):
        # Someone else wrote between our read and our write: the first writer after the value we
        # read wins. Put its value back over ours (unless yet another write followed) and give up.
        winner = store.version_value(version + 1) if written > version + 1 else predecessor
        _current, now_version = store.read()
        if winner is not None and now_version == written:
            store.restore(winner)
        raise DeployError(f"deploy lock {store.name}: another run took it over at the same moment; "
                          f"it holds the lock now, run again to see who")
    return dict(result, changed=True, recovered=holder, parameter_version=written, msg=msg)


def update(module, store, now):
    params = module.params
    holder, version = store.read()
    base = dict(name=store.name, run_id=params["run_id"], recovered=None)
    if holder is None:
        raise DeployError(f"deploy lock {store.name} is not held by anyone (it was released or never taken); "
                          f"not updating it")
    if not isinstance(holder, dict) or holder.get("run_id") != params["run_id"]:
        raise DeployError(describe_holder(store.name, holder) + f", not by run {params['run_id']}; not updating it")
    lock = updated_lock(holder, params, now)
    if module.check_mode:
        return dict(base, changed=True, lock=lock, parameter_version=None, msg=f"would update deploy lock {store.name}")
    written = store.overwrite(lock)
    if written != version + 1:
        raise DeployError(f"deploy lock {store.name} changed while this run was updating it (expired and "
                          f"taken over?); this run may no longer hold it")
    return dict(base, changed=True, lock=lock, parameter_version=written, msg=f"updated deploy lock {store.name}")


def release(module, store):
    params = module.params
    holder, _version = store.read()
    base = dict(name=store.name, run_id=params["run_id"], recovered=None, lock={}, parameter_version=None)
    if holder is None:
        return dict(base, changed=False, msg=f"deploy lock {store.name} is not held")
    ours = isinstance(holder, dict) and params["run_id"] and holder.get("run_id") == params["run_id"]
    if not ours and not params["force"]:
        raise DeployError(describe_holder(store.name, holder) + f", not by run {params['run_id']}; not releasing it")
    if not module.check_mode:
        store.delete()
    verb = "would release" if module.check_mode else "released"
    return dict(base, changed=True, recovered=None if ours else holder,
                msg=f"{verb} deploy lock {store.name}" + ("" if ours else " (forced)"))


ARGUMENT_SPEC = argument_spec(
    name={"type": "str"},
    app={"type": "str"},
    env={"type": "str"},
    state={"type": "str", "choices": ["acquired", "updated", "released"], "default": "acquired"},
    run_id={"type": "str"},
    version={"type": "str", "default": ""},
    ttl={"type": "int", "default": 3600},
    data={"type": "dict", "default": {}},
    owner={"type": "str"},
    pid={"type": "int"},
    force={"type": "bool", "default": False},
    takeover_run_id={"type": "str"},
    tier={"type": "str", "choices": ["Standard", "Advanced"], "default": "Standard"},
)


def main():
    module = AnsibleModule(
        argument_spec=ARGUMENT_SPEC,
        required_one_of=[("name", "app")],
        required_together=[("app", "env")],
        required_if=[("state", "updated", ("run_id",))],
        supports_check_mode=True,
    )
    params = module.params
    if params["ttl"] <= 0:
        module.fail_json(msg=f"ttl must be a positive number of seconds, got {params['ttl']}")
    if params["state"] == "released" and not params["run_id"] and not params["force"]:
        module.fail_json(msg="state=released needs the run_id that acquired the lock (or force: true)")
    name = params["name"] or f"/{params['app']}/{params['env']}/deploy-lock"
    try:
        store = LockStore(AwsCalls(params), name, params["tier"])
        now = datetime.now(timezone.utc)
        if params["state"] == "acquired":
            result = acquire(module, store, now)
        elif params["state"] == "updated":
            result = update(module, store, now)
        else:
            result = release(module, store)
    except DeployError as exc:
        module.fail_json(msg=str(exc), name=name)
    module.exit_json(**result)


if __name__ == "__main__":
    main()

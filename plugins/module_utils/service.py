"""Taking EC2 instances out of service and putting them back: the rules and the one wait shared by
``ec2fleet.fleet.service_state`` (a whole batch per call), ``asg_standby`` and ``target_wait`` (one
instance per call).

Out of service: an Auto Scaling instance goes to Standby (EnterStandby) and AWS deregisters it from
its group's target groups, where it drains for the deregistration delay; an instance outside any
group is deregistered from its target groups directly. Back in service: ExitStandby (the group's
launch lifecycle hooks run, see :class:`LaunchHooks`) or RegisterTargets, then healthy in every
target group.

What a batch costs, whatever its size: EnterStandby / ExitStandby take at most 20 instance IDs a
call, DescribeAutoScalingInstances at most 50; one RegisterTargets / DeregisterTargets per target
group for all the batch's instances outside a group; and each poll of :func:`wait_members` reads
each involved target group's health once (DescribeTargetHealth without a Targets filter).

A problem with one instance (a wrong lifecycle state, a group that would go below its minimum size,
a failed call for its group or target group, a timeout, an instance terminated or detached while
waiting) fails that instance only: :meth:`Member.fail` records one line in its result, and it is
left out of every later step while the others go on. Only failures no instance can get past
(credentials, region, endpoint: :func:`concerns_whole_call`) are raised.

Every AWS call goes through ``aws.AwsCalls``.
"""

from __future__ import annotations

import json
import re
import time

from ansible_collections.ec2fleet.fleet.plugins.module_utils.aws import FleetAWSError, error_kind
from ansible_collections.ec2fleet.fleet.plugins.module_utils.deploy import (
    DRAINING_STATES,
    ENTERING_STANDBY,
    HEALTHY,
    IN_SERVICE,
    LEAVING_STANDBY,
    NOT_REGISTERED,
    STANDBY,
    DeployError,
    deregistration_delay,
    state_line,
    summarize,
    targets_by_instance,
    tg_name,
)

OUT, IN = "out", "in"

# API limits.
STANDBY_IDS_PER_CALL = 20  # EnterStandby / ExitStandby InstanceIds
DESCRIBE_IDS_PER_CALL = 50  # DescribeAutoScalingInstances InstanceIds
GROUP_NAMES_PER_CALL = 50  # DescribeAutoScalingGroups AutoScalingGroupNames (a page holds 100)
TARGET_GROUPS_PER_CALL = 20  # DescribeTargetGroups TargetGroupArns
EC2_FILTER_VALUES = 200  # values of one DescribeInstances filter

DRAIN_MARGIN = 120  # seconds on top of the longest deregistration delay (default drain timeout)
DEFAULT_INSERVICE_TIMEOUT = 600

# Failures that concern every instance of a call, not one group: raised, never one instance's error.
WHOLE_CALL_ERRORS = frozenset({"no_credentials", "bad_credentials", "region_disabled", "unreachable"})
EC2_GONE = frozenset({"shutting-down", "terminated"})
REGISTRABLE = frozenset({"running"})  # the EC2 state RegisterTargets takes

# direction -> (lifecycle state wanted, states passed through on the way, target state wanted)
GOALS = {
    OUT: (STANDBY, ENTERING_STANDBY | {IN_SERVICE}, NOT_REGISTERED),
    IN: (IN_SERVICE, LEAVING_STANDBY | {STANDBY}, HEALTHY),
}

INSTANCE_ID = re.compile(r"^i-(?:[0-9a-f]{8}|[0-9a-f]{17})$")
ENTRY_KEYS = ("instance_id", "asg_name", "target_group_arns")


def chunks(items, size):
    items = list(items)
    return [items[i:i + size] for i in range(0, len(items), size)]


def name_ids(ids, shown=3):
    """``i-1, i-2, i-3 and 22 more`` for error lines."""
    ids = list(ids)
    more = f" and {len(ids) - shown} more" if len(ids) > shown else ""
    return ", ".join(ids[:shown]) + more


def concerns_whole_call(exc):
    """True for a failure no instance of the call can get past (credentials, region, endpoint)."""
    return error_kind(exc.__cause__ or exc) in WHOLE_CALL_ERRORS


def drain_timeout(delays):
    """The default drain wait: the longest deregistration delay (``{arn: seconds}``) plus a margin."""
    return max(delays.values(), default=0) + DRAIN_MARGIN


# --- the rules ----------------------------------------------------------------------------------

def standby_step(instance_id, state, direction):
    """What taking the instance ``out`` of service (or ``in``) needs from its lifecycle state:
    ``"call"`` (EnterStandby / ExitStandby) or ``"wait"`` (on its way, or there already);
    DeployError when it cannot go there from that state."""
    if direction == OUT:
        if state == IN_SERVICE:
            return "call"
        if state == STANDBY or state in ENTERING_STANDBY:
            return "wait"
        raise DeployError(f"cannot put {instance_id} in Standby: its lifecycle state is {state} (needs InService)")
    if state == STANDBY:
        return "call"
    if state == IN_SERVICE or state in LEAVING_STANDBY:
        return "wait"
    raise DeployError(f"cannot return {instance_id} to service: its lifecycle state is {state}")


def capacity_refusal(group, instance_ids, direction, decrement=True):
    """Why the group cannot take these instances out of service (decrementing the desired capacity
    below MinSize) or back (ExitStandby raises it above MaxSize), as one line; None when it can.
    Checked before calling: AWS refuses the whole call otherwise."""
    name, desired, count = group["AutoScalingGroupName"], group["DesiredCapacity"], len(instance_ids)
    ids = ", ".join(instance_ids)
    if direction == OUT:
        if decrement and desired - count < group["MinSize"]:
            return (f"cannot put {ids} in Standby decrementing {name}'s desired capacity: {desired} - {count} is "
                    f"below the group's minimum size {group['MinSize']} "
                    f"(lower MinSize, or use should_decrement_desired_capacity: false)")
        return None
    if desired + count > group["MaxSize"]:
        return (f"cannot move {ids} out of Standby: {name}'s desired capacity {desired} + {count} would exceed "
                f"its maximum size {group['MaxSize']} (raise MaxSize, or lower the desired capacity first)")
    return None


def to_deregister(entries, port=None):
    """The instance's entries to deregister: not draining already, on ``port`` (None: every port)."""
    return [e for e in entries if e["state"] not in DRAINING_STATES and (port is None or e["port"] == port)]


def registered_on(entries, port):
    return any(e["port"] == port for e in entries)


def target_type_error(arn, group):
    """One line when the target group does not take instances as targets, else None."""
    if group.get("TargetType", "instance") != "instance":
        return f"target group {tg_name(arn)} has target type {group['TargetType']}; this module registers instances"
    return None


# --- look-ups -----------------------------------------------------------------------------------

def asg_instances(aws, instance_ids):
    """{instance_id: Auto Scaling record} of those in a group; DescribeAutoScalingInstances, 50 ids a call."""
    found = {}
    for chunk in chunks(instance_ids, DESCRIBE_IDS_PER_CALL):
        records = aws.call("autoscaling", "describe_auto_scaling_instances",
                           f"describe the Auto Scaling instances {name_ids(chunk)}",
                           InstanceIds=chunk)["AutoScalingInstances"]
        found.update((r["InstanceId"], r) for r in records)
    return found


def auto_scaling_groups(aws, names):
    """{name: group} of those that exist."""
    found = {}
    for chunk in chunks(sorted(names), GROUP_NAMES_PER_CALL):
        groups = aws.paginate("autoscaling", "describe_auto_scaling_groups", "AutoScalingGroups",
                              f"describe Auto Scaling groups {', '.join(chunk)}", AutoScalingGroupNames=chunk)
        found.update((g["AutoScalingGroupName"], g) for g in groups)
    return found


def target_groups(aws, arns):
    """{arn: TargetGroup} (ports and target types)."""
    found = {}
    for chunk in chunks(arns, TARGET_GROUPS_PER_CALL):
        groups = aws.call("elbv2", "describe_target_groups", "describe target groups",
                          TargetGroupArns=chunk)["TargetGroups"]
        found.update((g["TargetGroupArn"], g) for g in groups)
    return found


def ec2_states(aws, instance_ids):
    """{instance_id: EC2 state name} of those that exist (a filter: unknown IDs are no error)."""
    found = {}
    for chunk in chunks(instance_ids, EC2_FILTER_VALUES):
        reservations = aws.paginate("ec2", "describe_instances", "Reservations",
                                    f"describe EC2 instances {name_ids(chunk)}",
                                    Filters=[{"Name": "instance-id", "Values": chunk}])
        for reservation in reservations:
            for instance in reservation.get("Instances", []):
                found[instance["InstanceId"]] = instance.get("State", {}).get("Name", "")
    return found


def target_health(aws, arns):
    """One DescribeTargetHealth per target group: ``({arn: {instance_id: entries}}, {arn: error line})``."""
    health, errors = {}, {}
    for arn in arns:
        try:
            health[arn] = targets_by_instance(aws, arn)
        except FleetAWSError as exc:
            if concerns_whole_call(exc):
                raise
            errors[arn] = str(exc)
    return health, errors


# --- lifecycle hooks ----------------------------------------------------------------------------

class LaunchHooks:
    """ExitStandby runs the group's launch lifecycle hooks: the instance waits in Pending:Wait
    until each is completed (or its heartbeat timeout passes and the default result applies).
    ``complete``: the instance was in service before Standby and the deploy's health gates check
    it, so the deploy completes them with CONTINUE. ``heartbeat``: something else completes them
    (a hook's owner that must run on every return to service); the deploy keeps them from timing
    out while it waits.

    ``names_cache`` ({group: hook names}) lets the instances of one group share one
    DescribeLifecycleHooks call."""

    HEARTBEAT_EVERY = 60.0

    def __init__(self, aws, group_name, instance_id, mode, names_cache=None):
        self.aws, self.group_name, self.instance_id, self.mode = aws, group_name, instance_id, mode
        self.handled = []
        self._names = names_cache if names_cache is not None else {}
        self._last_beat = None

    def names(self):
        if self.group_name not in self._names:
            hooks = self.aws.call("autoscaling", "describe_lifecycle_hooks",
                                  f"describe the lifecycle hooks of {self.group_name}",
                                  AutoScalingGroupName=self.group_name)["LifecycleHooks"]
            self._names[self.group_name] = sorted(h["LifecycleHookName"] for h in hooks
                                                  if h.get("LifecycleTransition") == "autoscaling:EC2_INSTANCE_LAUNCHING")
        return self._names[self.group_name]

    def on_state(self, state):
        if state != "Pending:Wait":
            return
        now = time.monotonic()
        if self.mode == "complete":
            for name in self.names():
                if name in self.handled:
                    continue
                self.aws.call("autoscaling", "complete_lifecycle_action",
                              f"complete lifecycle hook {name} for {self.instance_id}",
                              AutoScalingGroupName=self.group_name, LifecycleHookName=name,
                              InstanceId=self.instance_id, LifecycleActionResult="CONTINUE")
                self.handled.append(name)
        elif self._last_beat is None or now - self._last_beat >= self.HEARTBEAT_EVERY:
            for name in self.names():
                self.aws.call("autoscaling", "record_lifecycle_action_heartbeat",
                              f"heartbeat lifecycle hook {name} for {self.instance_id}",
                              AutoScalingGroupName=self.group_name, LifecycleHookName=name,
                              InstanceId=self.instance_id)
                if name not in self.handled:
                    self.handled.append(name)
            self._last_beat = now


# --- one instance of a batch --------------------------------------------------------------------

class Member:
    """One instance: where it is (``asg`` or None for one outside any group, ``arns``) and its
    outcome (``result``, the module's per-instance return value)."""

    def __init__(self, instance_id, asg_name=None, arns=()):
        self.id, self.asg = instance_id, asg_name
        self.ec2_state = None  # looked up for an instance outside any group
        self.hooks = None
        self.phase = "ready"  # then lifecycle, targets, confirm, done; or failed
        self.since = 0.0
        self.result = {
            "ok": True, "error": "", "asg_name": asg_name,
            "previous_lifecycle_state": None, "lifecycle_state": None,
            "target_groups": list(arns), "target_states": {},
            "lifecycle_wait_seconds": 0.0, "target_wait_seconds": 0.0, "lifecycle_hooks": [],
        }

    @property
    def arns(self):
        return self.result["target_groups"]

    @property
    def ok(self):
        return self.result["ok"]

    def fail(self, error):
        """Record the (first) problem as one line; the instance takes no further part."""
        if self.ok:
            self.result.update(ok=False, error=" ".join(str(error).split()))
        self.phase = "failed"


def fail_all(members, exc):
    """A call for these members failed: theirs only, unless it concerns the whole call (raised)."""
    if concerns_whole_call(exc):
        raise exc
    for member in members:
        member.fail(exc)


def parse_instances(entries):
    """Members from the ``instances`` option; DeployError naming the first bad entry, one line."""
    members, seen = [], {}
    for n, entry in enumerate(entries or []):
        shown = json.dumps(entry, sort_keys=True, default=str)
        shown = shown if len(shown) <= 200 else shown[:197] + "..."

        def bad(reason, n=n, shown=shown):
            return DeployError(f"invalid instances[{n}] {shown}: {reason}")

        if not isinstance(entry, dict):
            raise bad("each entry is a dict with instance_id, asg_name and target_group_arns")
        unknown = sorted(str(key) for key in entry if key not in ENTRY_KEYS)
        if unknown:
            raise bad(f"unknown key(s) {', '.join(unknown)} (known: {', '.join(ENTRY_KEYS)})")
        instance_id = entry.get("instance_id")
        if not isinstance(instance_id, str) or not INSTANCE_ID.match(instance_id):
            raise bad("instance_id must be an EC2 instance ID such as i-0123456789abcdef0")
        if instance_id in seen:
            raise bad(f"{instance_id} is listed twice (also instances[{seen[instance_id]}])")
        seen[instance_id] = n
        asg_name = entry.get("asg_name")
        if asg_name is not None and not isinstance(asg_name, str):
            raise bad("asg_name must be an Auto Scaling group name, or null for an instance outside any group")
        arns = entry.get("target_group_arns")
        if arns is None:
            arns = []
        if not isinstance(arns, list) or not all(isinstance(a, str) and a.startswith("arn:")
                                                 and ":targetgroup/" in a for a in arns):
            raise bad("target_group_arns must be a list of target group ARNs")
        if asg_name:
            members.append(Member(instance_id, asg_name))
        else:  # outside any group: its own target groups (none: nothing to move, nothing to wait for)
            members.append(Member(instance_id, None, list(dict.fromkeys(arns))))
    return members


# --- the wait -----------------------------------------------------------------------------------

def wait_members(aws, members, direction, timeout, poll_interval, lifecycle_hooks="complete",
                 sleep=time.sleep, clock=time.monotonic):
    """Wait until every member still ok is out of service (``direction="out"``: lifecycle state
    Standby, then neither registered nor draining in any of its target groups) or back in
    (``"in"``: InService, handling launch lifecycle hooks in Pending:Wait, then healthy in every
    target group). Members outside any group only wait on their target groups.

    Each poll: DescribeAutoScalingInstances for the group members still waiting (50 a call; kept
    up after their lifecycle state is reached, so one terminated or detached meanwhile fails at
    once), then one DescribeTargetHealth per target group of the members waiting on their target
    groups; a group member whose target groups reached the goal is done only when one more
    DescribeAutoScalingInstances, read after its target groups, still finds it in its group in
    the wanted state (one read for all the members finishing in that poll: an instance terminated
    between the two reads of a poll is gone from its target groups and would otherwise pass as
    drained). Each member has ``timeout`` seconds for its lifecycle state and again for its target
    groups; one that fails is dropped from later polls. Returns (seconds waited, polls).
    """
    want, passing, goal = GOALS[direction]
    start = clock()
    names_cache = {}
    waiting = [m for m in members if m.ok]
    for member in waiting:
        member.phase, member.since = ("lifecycle" if member.asg else "targets"), start
        if direction == IN and member.asg:
            member.hooks = LaunchHooks(aws, member.asg, member.id, lifecycle_hooks, names_cache)
    polls = 0
    while waiting:
        polls += 1
        _poll_lifecycle(aws, [m for m in waiting if m.asg], want, passing, timeout, start, clock)
        _poll_targets(aws, [m for m in waiting if m.phase == "targets"], goal, timeout, clock)
        _poll_lifecycle(aws, [m for m in waiting if m.phase == "confirm"], want, passing, timeout, start, clock)
        waiting = [m for m in waiting if m.phase in ("lifecycle", "targets")]
        if waiting:
            left = min(m.since + timeout for m in waiting) - clock()
            sleep(min(poll_interval, max(left, 0.05)))
    return round(clock() - start, 1), polls


def _poll_lifecycle(aws, members, want, passing, timeout, start, clock):
    records = {}
    for chunk in chunks(members, DESCRIBE_IDS_PER_CALL):
        try:
            records.update(asg_instances(aws, [m.id for m in chunk]))
        except FleetAWSError as exc:
            fail_all(chunk, exc)
    now = clock()
    for member in members:
        if not member.ok:
            continue
        record = records.get(member.id)
        if record is None or record["AutoScalingGroupName"] != member.asg:
            member.result["lifecycle_state"] = "detached"
            waiting_for = want if member.phase == "lifecycle" else "its target groups"
            member.fail(f"{member.id} left Auto Scaling group {member.asg!r} (terminated or detached) "
                        f"while waiting for {waiting_for}")
            continue
        state = member.result["lifecycle_state"] = record["LifecycleState"]
        if member.phase in ("targets", "confirm"):
            if state != want:
                member.fail(f"{member.id} went to lifecycle state {state} while waiting for its target groups")
            elif member.phase == "confirm":
                member.phase = "done"
            continue
        if state == want:
            member.result["lifecycle_wait_seconds"] = round(now - start, 1)
            member.phase, member.since = "targets", now
            continue
        if state not in passing:
            member.fail(f"{member.id} went to lifecycle state {state} while waiting for {want}")
            continue
        if member.hooks is not None:
            try:
                member.hooks.on_state(state)
            except FleetAWSError as exc:
                fail_all([member], exc)
                continue
            finally:
                member.result["lifecycle_hooks"] = list(member.hooks.handled)
        if now - member.since >= timeout:
            member.fail(f"{member.id} still {state} after {now - member.since:.0f}s, waiting for {want}")


def _poll_targets(aws, members, goal, timeout, clock):
    if not members:
        return
    health, errors = target_health(aws, sorted({arn for m in members for arn in m.arns}))
    now = clock()
    for member in members:
        failed = [arn for arn in member.arns if arn in errors]
        if failed:
            member.fail(errors[failed[0]])
            continue
        states = {arn: health[arn].get(member.id, []) for arn in member.arns}
        member.result["target_states"] = states
        if all(summarize(entries) == goal for entries in states.values()):
            member.result["target_wait_seconds"] = round(now - member.since, 1)
            member.phase = "confirm" if member.asg else "done"
        elif now - member.since >= timeout:
            pending = [state_line(arn, entries) for arn, entries in states.items() if summarize(entries) != goal]
            word = "healthy" if goal == HEALTHY else "deregistered"
            member.fail(f"{member.id} not {word} in every target group after {now - member.since:.0f}s: "
                        + "; ".join(pending))


def wait_one(aws, instance_id, asg_name, arns, direction, timeout, poll_interval, lifecycle_hooks="complete"):
    """:func:`wait_members` for one instance: its result, or DeployError with its one line."""
    member = Member(instance_id, asg_name, arns)
    wait_members(aws, [member], direction, timeout, poll_interval, lifecycle_hooks)
    if not member.ok:
        raise DeployError(member.result["error"])
    return member.result


# --- a batch ------------------------------------------------------------------------------------

def locate(aws, members):
    """Fill in each member's group, target groups and lifecycle state; fail those that are not
    where their entry says. Returns {group name: group}. One DescribeAutoScalingInstances per 50
    instances, one DescribeInstances for those in no group, one DescribeAutoScalingGroups per 50 groups."""
    records = asg_instances(aws, [m.id for m in members]) if members else {}
    outside = [m.id for m in members if m.id not in records]
    ec2 = ec2_states(aws, outside) if outside else {}
    names = {m.asg for m in members if m.asg and records.get(m.id, {}).get("AutoScalingGroupName") == m.asg}
    groups = auto_scaling_groups(aws, names) if names else {}
    for member in members:
        record = records.get(member.id)
        if record is not None:
            member.result["previous_lifecycle_state"] = member.result["lifecycle_state"] = record["LifecycleState"]
        if member.asg:
            if record is None:
                member.fail(f"EC2 instance {member.id} not found ({aws.where})" if member.id not in ec2
                            else f"{member.id} is not in any Auto Scaling group ({aws.where})")
            elif record["AutoScalingGroupName"] != member.asg:
                member.fail(f"{member.id} belongs to Auto Scaling group {record['AutoScalingGroupName']!r}, "
                            f"not {member.asg!r}")
            elif member.asg not in groups:
                member.fail(f"Auto Scaling group {member.asg!r} not found ({aws.where})")
            else:
                member.result["target_groups"] = sorted(groups[member.asg].get("TargetGroupARNs", []))
        elif record is not None:
            member.fail(f"{member.id} is in Auto Scaling group {record['AutoScalingGroupName']!r}: give its asg_name "
                        f"(target_group_arns are for instances outside any group)")
        elif member.id not in ec2:
            member.fail(f"EC2 instance {member.id} not found ({aws.where})")
        elif ec2[member.id] in EC2_GONE:
            member.fail(f"EC2 instance {member.id} is {ec2[member.id]}")
        else:
            member.ec2_state = ec2[member.id]
    return groups


def plan_standby(members, groups, direction, decrement):
    """{group name: [members]} that need EnterStandby (or ExitStandby); fails the members whose
    lifecycle state does not allow it, and a group's members when the group's capacity does not."""
    calls = {}
    for member in members:
        if not member.ok or not member.asg:
            continue
        try:
            step = standby_step(member.id, member.result["lifecycle_state"], direction)
        except DeployError as exc:
            member.fail(exc)
            continue
        if step == "call":
            calls.setdefault(member.asg, []).append(member)
    for name, group_members in calls.items():
        refusal = capacity_refusal(groups[name], [m.id for m in group_members], direction, decrement)
        if refusal:
            for member in group_members:
                member.fail(refusal)
    return {name: [m for m in ms if m.ok] for name, ms in sorted(calls.items()) if any(m.ok for m in ms)}


def plan_targets(aws, members, direction, health):
    """{arn: [(member, target)]} to deregister (out) or register (in) for the members outside any
    group, from ``health`` (read before); fails members of an unusable target group."""
    outside = [m for m in members if m.ok and not m.asg]
    details = {}
    if direction == IN and outside:
        arns = sorted({arn for m in outside for arn in m.arns})
        try:
            details = target_groups(aws, arns)
        except FleetAWSError as exc:
            fail_all(outside, exc)
        for member in outside:
            for arn in member.arns:
                if arn not in details:
                    member.fail(f"target group {arn} not found ({aws.where})")
                elif target_type_error(arn, details[arn]):
                    member.fail(target_type_error(arn, details[arn]))
    changes = {}
    for member in outside:
        if not member.ok:
            continue
        mine = []
        for arn in member.arns:
            entries = health[arn].get(member.id, [])
            if direction == OUT:
                mine.extend((arn, {"Id": member.id, "Port": e["port"]}) for e in to_deregister(entries))
            elif not registered_on(entries, details[arn]["Port"]):
                mine.append((arn, {"Id": member.id, "Port": details[arn]["Port"]}))
        if direction == IN and mine and member.ec2_state not in REGISTRABLE:
            # Checked here: one instance a target group cannot take fails the call for all of them.
            member.fail(f"cannot register {member.id} in its target groups: the EC2 instance is {member.ec2_state} "
                        f"(RegisterTargets takes running instances)")
            continue
        for arn, target in mine:
            changes.setdefault(arn, []).append((member, target))
    return {arn: pairs for arn, pairs in sorted(changes.items()) if pairs}


def move_batch(aws, members, direction, check_mode=False, decrement=True, timeout=None, poll_interval=5.0,
               lifecycle_hooks="complete", sleep=time.sleep, clock=time.monotonic):
    """Take the members out of service (``direction="out"``) or put them back in (``"in"``) and
    wait. Returns the module's result (without ``api_calls``)."""
    groups = locate(aws, members)
    standby = plan_standby(members, groups, direction, decrement)
    outside = [m for m in members if m.ok and not m.asg]
    read_now = {arn for m in outside for arn in m.arns}
    if check_mode:  # reported as they are now: every target group, once
        read_now |= {arn for m in members if m.ok for arn in m.arns}
    health, errors = target_health(aws, sorted(read_now))
    for member in members:
        unreadable = [arn for arn in member.arns if arn in errors]
        if unreadable and (check_mode or not member.asg):
            member.fail(errors[unreadable[0]])
    registrations = plan_targets(aws, members, direction, health)
    standby = {name: [m for m in ms if m.ok] for name, ms in standby.items() if any(m.ok for m in ms)}
    moved, registered = [], set()
    waited, polls = 0.0, 0

    if check_mode:
        for member in members:
            if member.ok:
                member.result["target_states"] = {arn: health[arn].get(member.id, []) for arn in member.arns}
        moved = [m.id for ms in standby.values() for m in ms]
        registered = {m.id for pairs in registrations.values() for m, _target in pairs}
    else:
        for name, group_members in standby.items():
            for chunk in chunks(group_members, STANDBY_IDS_PER_CALL):
                ids = [m.id for m in chunk]
                try:
                    if direction == OUT:
                        aws.call("autoscaling", "enter_standby", f"put {name_ids(ids)} in Standby in {name}",
                                 AutoScalingGroupName=name, InstanceIds=ids, ShouldDecrementDesiredCapacity=decrement)
                    else:
                        aws.call("autoscaling", "exit_standby", f"move {name_ids(ids)} out of Standby in {name}",
                                 AutoScalingGroupName=name, InstanceIds=ids)
                    moved.extend(ids)
                except FleetAWSError as exc:
                    fail_all(chunk, exc)
        for arn, pairs in registrations.items():
            pairs = [(m, target) for m, target in pairs if m.ok]
            if not pairs:
                continue
            ids = list(dict.fromkeys(m.id for m, _target in pairs))
            try:
                if direction == OUT:
                    aws.call("elbv2", "deregister_targets", f"deregister {name_ids(ids)} from {tg_name(arn)}",
                             TargetGroupArn=arn, Targets=[target for _m, target in pairs])
                else:
                    aws.call("elbv2", "register_targets", f"register {name_ids(ids)} in {tg_name(arn)}",
                             TargetGroupArn=arn, Targets=[target for _m, target in pairs])
                registered.update(ids)
            except FleetAWSError as exc:
                fail_all([m for m, _target in pairs], exc)
        if timeout is None:
            timeout = DEFAULT_INSERVICE_TIMEOUT if direction == IN else _drain_timeout(aws, members)
        waited, polls = wait_members(aws, members, direction, timeout, poll_interval, lifecycle_hooks, sleep, clock)

    registered = sorted(registered)
    ok = sorted(m.id for m in members if m.ok)
    failed = sorted(m.id for m in members if not m.ok)
    changed = bool(moved or registered)
    return {
        "changed": changed,
        "instances": {m.id: m.result for m in members},
        "ok_instances": ok,
        "failed_instances": failed,
        "waited_seconds": waited,
        "polls": polls,
        "msg": summary(direction, check_mode, len(members), ok, failed, moved, registered, waited),
    }


def _drain_timeout(aws, members):
    """drain_timeout() of the target groups of the members still ok (one call per target group)."""
    delays = {}
    for arn in sorted({arn for m in members if m.ok for arn in m.arns}):
        try:
            delays[arn] = deregistration_delay(aws, arn)
        except FleetAWSError as exc:
            fail_all([m for m in members if m.ok and arn in m.arns], exc)
    return drain_timeout(delays)


def summary(direction, check_mode, total, ok, failed, moved, registered, waited):
    """The module's one-line msg."""
    if direction == OUT:
        did = f"{len(moved)} put in Standby, {len(registered)} deregistered from their target groups"
        where = "out of service"
    else:
        did = f"{len(moved)} moved out of Standby, {len(registered)} registered in their target groups"
        where = "back in service"
    failures = f"; {len(failed)} failed: {name_ids(failed, 10)}" if failed else ""
    if check_mode:
        return f"would take {len(ok)} of {total} instance(s) {where}: {did} (check mode, not waited){failures}"
    return f"{len(ok)} of {total} instance(s) {where} ({did}; waited {waited}s){failures}"

"""ec2fleet.fleet.service_state: a whole batch out of service and back in one call.

On the emulator: instances of two Auto Scaling groups sharing a target group plus one instance
outside any group, out then in (and again: idempotent); a 25-instance batch (EnterStandby in calls
of 20, target health read once per target group per poll, from the module's api_calls); one
instance terminated mid-wait failing alone; a group's MinSize refusing that group's instances
only; instances that are not where their entry says; check mode; invalid entries. moto does not
deregister Standby instances from target groups (AWS does): deploy_support.StandbyStandIn, a
thread, does that to the emulator, openly.

Without the emulator: the batch logic (plugins/module_utils/service.py) against FakeFleet, a
scripted stand-in for the few API calls involved whose clock is the module's polls, so the calls
of every single poll can be counted exactly.
"""

from __future__ import annotations

import math
import threading
import time

import botocore.exceptions
import inventory_fleet
import pytest
from ansible_collections.ec2fleet.fleet.plugins.module_utils import service
from ansible_collections.ec2fleet.fleet.plugins.module_utils.aws import FleetAWSError
from deploy_support import StandbyStandIn, client, lifecycle, registered, run_module, run_tasks, web_fleet

FAST = {"poll_interval": 0.2}
MODULE = "ec2fleet.fleet.service_state"


def entries(ids, asg_name):
    return [{"instance_id": iid, "asg_name": asg_name} for iid in ids]


def plain_instance(fleet):
    return client("ec2").run_instances(ImageId=inventory_fleet.AMI, MinCount=1, MaxCount=1,
                                       SubnetId=fleet.private_subnets[0])["Instances"][0]["InstanceId"]


def desired(name):
    return client("autoscaling").describe_auto_scaling_groups(
        AutoScalingGroupNames=[name])["AutoScalingGroups"][0]["DesiredCapacity"]


def task(name, **args):
    return {"name": name, MODULE: {**FAST, **args}}


# --- on the emulator ----------------------------------------------------------------------------

@pytest.mark.emulator
def test_two_groups_sharing_a_target_group_and_one_host_outside_out_and_back_in(aws):
    web, arns, fleet = web_fleet(size=3, deregistration_delays={"web": 5})
    api = inventory_fleet.add_asg(fleet, "api", 2, target_group_arns=arns)
    outside = plain_instance(fleet)
    client("elbv2").register_targets(TargetGroupArn=arns[0], Targets=[{"Id": outside, "Port": 80}])
    batch = [*entries(web[:2], "web"), *entries(api[:1], "api"),
             {"instance_id": outside, "asg_name": None, "target_group_arns": arns}]
    with StandbyStandIn("web", drain=1.0), StandbyStandIn("api", drain=1.0):
        out, out_again = run_tasks([task("out", instances=batch, state="out"),
                                    task("out again", instances=batch, state="out")])
        meanwhile = {"lifecycle": [lifecycle(iid) for iid in (*web, *api)], "desired": [desired("web"), desired("api")],
                     "outside registered": bool(registered(arns[0], outside))}
        back, back_again = run_tasks([task("in", instances=batch, state="in"),
                                      task("in again", instances=batch, state="in")])
    assert meanwhile == {"lifecycle": ["Standby", "Standby", "InService", "Standby", "InService"],
                         "desired": [1, 1],  # decremented: no replacements
                         "outside registered": False}
    everyone = sorted([*web[:2], api[0], outside])
    assert "failed" not in out or out["failed"] is False
    assert out["changed"] is True and out["ok_instances"] == everyone and out["failed_instances"] == []
    assert out["msg"].startswith("4 of 4 instance(s) out of service (3 put in Standby, 1 deregistered from their "
                                 "target groups; waited ")
    for iid, asg in [(web[0], "web"), (web[1], "web"), (api[0], "api")]:
        entry = out["instances"][iid]
        assert entry["ok"] is True and entry["error"] == "" and entry["asg_name"] == asg
        assert entry["previous_lifecycle_state"] == "InService" and entry["lifecycle_state"] == "Standby"
        assert entry["target_groups"] == arns and entry["target_states"] == {arns[0]: []}
    assert out["instances"][web[0]]["target_wait_seconds"] >= 0.5  # the stand-in's drain
    lone = out["instances"][outside]
    assert lone["asg_name"] is None and lone["previous_lifecycle_state"] is None and lone["lifecycle_state"] is None
    assert lone["target_groups"] == arns and lone["target_states"] == {arns[0]: []}
    assert out["waited_seconds"] >= 0.5
    calls = out["api_calls"]
    assert calls["EnterStandby"] == 2 and calls["DeregisterTargets"] == 1  # one per group; one per target group
    assert calls["DescribeAutoScalingGroups"] == 1 and calls["DescribeTargetGroupAttributes"] == 1
    # One target group: one DescribeTargetHealth before (the host outside: what to deregister) and one
    # per poll; one DescribeAutoScalingInstances for the look-up, one per poll (one per 50 instances),
    # and one confirming read in each poll where group members reached the goal (at least one, at
    # most one per member).
    assert calls["DescribeTargetHealth"] == 1 + out["polls"]
    assert 1 + out["polls"] + 1 <= calls["DescribeAutoScalingInstances"] <= 1 + out["polls"] + 3

    assert out_again["changed"] is False and out_again["ok_instances"] == everyone
    assert "EnterStandby" not in out_again["api_calls"] and "DeregisterTargets" not in out_again["api_calls"]
    assert out_again["msg"].startswith("4 of 4 instance(s) out of service (0 put in Standby, 0 deregistered")

    assert back["changed"] is True and back["ok_instances"] == everyone
    assert back["api_calls"]["ExitStandby"] == 2 and back["api_calls"]["RegisterTargets"] == 1
    for iid in (*web[:2], api[0], outside):
        assert [e["state"] for e in back["instances"][iid]["target_states"][arns[0]]] == ["healthy"]
    assert back["instances"][web[0]]["lifecycle_state"] == "InService"
    assert back["instances"][web[0]]["lifecycle_hooks"] == []
    assert back["msg"].startswith("4 of 4 instance(s) back in service (3 moved out of Standby, 1 registered")
    assert back_again["changed"] is False and back_again["ok_instances"] == everyone
    assert not {"ExitStandby", "RegisterTargets"} & set(back_again["api_calls"])
    assert desired("web") == 3 and desired("api") == 2
    assert all(lifecycle(iid) == "InService" for iid in (*web, *api))


@pytest.mark.emulator
def test_25_instances_two_standby_calls_and_one_health_read_per_target_group_per_poll(aws):
    ids, arns, _fleet = web_fleet(size=25, tg_names=("web", "api"))
    batch = entries(ids, "web")
    with StandbyStandIn("web", interval=0.3):
        out, back = run_tasks([task("out", instances=batch, state="out", timeout=120),
                               task("in", instances=batch, state="in", timeout=120)], timeout=600)
    for result, move in ((out, "EnterStandby"), (back, "ExitStandby")):
        assert result["changed"] is True and result["failed_instances"] == [] and len(result["ok_instances"]) == 25
        calls = result["api_calls"]
        assert calls[move] == 2  # 20 + 5
        # 25 ids: one DescribeAutoScalingInstances to look them up, then one per poll, and one more in
        # a poll where some reached the goal (to confirm they are still in Standby or InService);
        # each poll reads each of the 2 target groups at most once, whatever the batch size.
        polls = result["polls"]
        assert polls >= 1
        assert 1 + polls + 1 <= calls["DescribeAutoScalingInstances"] <= 1 + 2 * polls, calls
        assert len(arns) <= calls["DescribeTargetHealth"] <= len(arns) * polls, calls
    assert all(lifecycle(iid) == "InService" for iid in ids) and desired("web") == 25
    print(f"\n25-instance batch: out {out['api_calls']} ({out['waited_seconds']}s); "
          f"in {back['api_calls']} ({back['waited_seconds']}s)")


def terminate_once_in_standby(instance_id, stop, done):
    """TEST ACTION (not a double): terminates the instance, through the API, as soon as it is in
    Standby, then sets ``done``."""
    while not stop.is_set():
        try:
            if lifecycle(instance_id) == "Standby":
                client("ec2").terminate_instances(InstanceIds=[instance_id])
                done.set()
                return
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError):  # a busy emulator: ask again
            pass
        time.sleep(0.05)


class SturdyStandIn(StandbyStandIn):
    """deploy_support.StandbyStandIn that carries on when an instance it is about to deregister was
    terminated under it (the emulator answers InvalidTarget, which would end its thread: then nobody
    drains the others, and they time out; seen on a loaded machine)."""

    def _loop(self):
        while not self._stop.is_set():
            try:
                super()._loop()
            except botocore.exceptions.ClientError as exc:
                if exc.response["Error"]["Code"] != "InvalidTarget":
                    raise


@pytest.mark.emulator
def test_an_instance_terminated_mid_wait_fails_alone(aws):
    ids, arns, _fleet = web_fleet(size=3)
    stop, terminated = threading.Event(), threading.Event()
    killer = threading.Thread(target=terminate_once_in_standby, args=(ids[0], stop, terminated), daemon=True)
    killer.start()
    try:
        # Nothing drains before the killer has terminated the instance, however slow the machine (a
        # drain timed from Standby alone raced it: 3 s, then even 8 s, on a loaded machine, let the
        # instance drain first, and nothing failed); the others then drain 3 s later, so the
        # failure is seen while they are still waiting.
        with SturdyStandIn("web", drain=3.0, hold=terminated):
            (out,) = run_tasks([task("out", instances=entries(ids, "web"), state="out", timeout=60)])
    finally:
        stop.set()
        killer.join(10)
    assert out.get("failed", False) is False
    assert out["failed_instances"] == [ids[0]] and out["ok_instances"] == sorted(ids[1:])
    gone = out["instances"][ids[0]]
    assert gone["ok"] is False and gone["lifecycle_state"] == "detached"
    assert gone["error"].startswith(f"{ids[0]} left Auto Scaling group 'web' (terminated or detached) while waiting for")
    for iid in ids[1:]:
        assert out["instances"][iid]["ok"] is True and out["instances"][iid]["target_states"] == {arns[0]: []}
        assert out["instances"][iid]["target_wait_seconds"] >= 2  # they went on waiting for their drain
    assert out["msg"].endswith(f"; 1 failed: {ids[0]}")


@pytest.mark.emulator
def test_min_size_refuses_that_groups_instances_only(aws):
    web, arns, fleet = web_fleet(size=3, min_size=2)
    api = inventory_fleet.add_asg(fleet, "api", 2, target_group_arns=arns)
    with StandbyStandIn("api"):
        (out,) = run_tasks([task("out", instances=[*entries(web[:2], "web"), *entries(api[:1], "api")], state="out")])
    assert out.get("failed", False) is False and out["changed"] is True
    assert out["failed_instances"] == sorted(web[:2]) and out["ok_instances"] == [api[0]]
    refusal = (f"cannot put {web[0]}, {web[1]} in Standby decrementing web's desired capacity: 3 - 2 is below the "
               f"group's minimum size 2 (lower MinSize, or use should_decrement_desired_capacity: false)")
    assert [out["instances"][iid]["error"] for iid in web[:2]] == [refusal, refusal]
    assert out["api_calls"]["EnterStandby"] == 1  # api's; web's refused before calling
    assert lifecycle(web[0]) == lifecycle(web[1]) == "InService" and desired("web") == 3
    assert lifecycle(api[0]) == "Standby"
    assert out["instances"][web[0]]["target_states"] == {}  # dropped before the waits


@pytest.mark.emulator
def test_instances_not_where_their_entry_says_fail_alone(aws):
    web, arns, fleet = web_fleet(size=2)
    outside = plain_instance(fleet)
    ghost = "i-0123456789abcdef0"
    batch = [
        {"instance_id": web[0], "asg_name": "api"},
        {"instance_id": web[1], "asg_name": None, "target_group_arns": arns},
        {"instance_id": outside, "asg_name": "web"},
        {"instance_id": ghost, "asg_name": None, "target_group_arns": arns},
        {"instance_id": "i-0123456789abcdef1", "asg_name": "web"},
    ]
    # One that is fine, so the others' failures are seen not to stop it.
    batch.append({"instance_id": plain_instance(fleet), "asg_name": "", "target_group_arns": arns})
    # A stopped one: RegisterTargets would refuse it, and the call for every instance with it.
    stopped = plain_instance(fleet)
    client("ec2").stop_instances(InstanceIds=[stopped])
    batch.append({"instance_id": stopped, "asg_name": None, "target_group_arns": arns})
    result = run_module(MODULE, {"instances": batch, "state": "in"}, check=True)
    assert result.get("failed", False) is False
    errors = {iid: entry["error"] for iid, entry in result["instances"].items()}
    assert errors[web[0]] == f"{web[0]} belongs to Auto Scaling group 'web', not 'api'"
    assert errors[web[1]] == (f"{web[1]} is in Auto Scaling group 'web': give its asg_name "
                              f"(target_group_arns are for instances outside any group)")
    assert errors[outside].startswith(f"{outside} is not in any Auto Scaling group (region us-east-1")
    assert errors[ghost].startswith(f"EC2 instance {ghost} not found (region us-east-1")
    assert errors[batch[4]["instance_id"]].startswith(f"EC2 instance {batch[4]['instance_id']} not found")
    assert errors[stopped] == (f"cannot register {stopped} in its target groups: the EC2 instance is stopped "
                               f"(RegisterTargets takes running instances)")
    assert result["ok_instances"] == [batch[5]["instance_id"]] and errors[batch[5]["instance_id"]] == ""
    assert result["changed"] is True  # the good one would be registered


@pytest.mark.emulator
def test_check_mode_reports_and_changes_nothing(aws):
    web, arns, fleet = web_fleet(size=2)
    outside = plain_instance(fleet)
    client("elbv2").register_targets(TargetGroupArn=arns[0], Targets=[{"Id": outside, "Port": 80}])
    batch = [*entries(web, "web"), {"instance_id": outside, "asg_name": None, "target_group_arns": arns}]
    result = run_module(MODULE, {"instances": batch, "state": "out"}, check=True)
    assert result["changed"] is True and result["waited_seconds"] == 0
    assert result["msg"] == ("would take 3 of 3 instance(s) out of service: 2 put in Standby, 1 deregistered from "
                             "their target groups (check mode, not waited)")
    assert not {"EnterStandby", "DeregisterTargets", "DescribeTargetGroupAttributes"} & set(result["api_calls"])
    assert result["api_calls"]["DescribeTargetHealth"] == 1
    for iid in (*web, outside):
        assert [e["state"] for e in result["instances"][iid]["target_states"][arns[0]]] == ["healthy"]
    assert result["instances"][web[0]]["lifecycle_state"] == "InService"
    assert lifecycle(web[0]) == lifecycle(web[1]) == "InService" and desired("web") == 2
    assert registered(arns[0], outside)
    # Already out: nothing would change.
    client("autoscaling").enter_standby(AutoScalingGroupName="web", InstanceIds=web, ShouldDecrementDesiredCapacity=True)
    client("elbv2").deregister_targets(TargetGroupArn=arns[0], Targets=[{"Id": outside, "Port": 80}])
    result = run_module(MODULE, {"instances": batch, "state": "out"}, check=True)
    assert result["changed"] is False and result["ok_instances"] == sorted(batch_ids(batch))


def batch_ids(batch):
    return [entry["instance_id"] for entry in batch]


@pytest.mark.emulator
def test_an_invalid_entry_is_one_clear_line_and_nothing_is_called(aws):
    ids, arns, _fleet = web_fleet(size=1)
    good = {"instance_id": ids[0], "asg_name": "web"}
    cases = [
        ([good, {"asg_name": "web"}],
         'invalid instances[1] {"asg_name": "web"}: instance_id must be an EC2 instance ID such as i-0123456789abcdef0'),
        ([{"instance_id": "web-1", "asg_name": "web"}], 'invalid instances[0] {"asg_name": "web", "instance_id": "web-1"}: '
                                                       "instance_id must be an EC2 instance ID"),
        ([good, {"instance_id": ids[0], "asg": "web"}], f'invalid instances[1] {{"asg": "web", "instance_id": "{ids[0]}"}}: '
                                                        "unknown key(s) asg (known: instance_id, asg_name, target_group_arns)"),
        ([good, good], f"invalid instances[1] {{\"asg_name\": \"web\", \"instance_id\": \"{ids[0]}\"}}: {ids[0]} is "
                       f"listed twice (also instances[0])"),
        ([{"instance_id": ids[0], "asg_name": None, "target_group_arns": ["web"]}],
         "invalid instances[0] "),
        ([{"instance_id": ids[0], "asg_name": ["web"]}], "invalid instances[0] "),
    ]
    results = run_tasks([{"name": f"case {n}", MODULE: {"instances": batch, "state": "out"}, "ignore_errors": True}
                         for n, (batch, _expected) in enumerate(cases)])
    for result, (_batch, expected) in zip(results, cases, strict=True):
        assert result["failed"] is True
        assert result["msg"].startswith(expected), result["msg"]
        assert "\n" not in result["msg"]
    assert "target_group_arns must be a list of target group ARNs" in results[4]["msg"]
    assert "asg_name must be an Auto Scaling group name, or null" in results[5]["msg"]
    assert lifecycle(ids[0]) == "InService" and registered(arns[0], ids[0])


# --- the batch logic, against a scripted fleet --------------------------------------------------

class FakeFleet:
    """TEST DOUBLE of the Auto Scaling, ELBv2 and EC2 calls of plugins/module_utils/service.py, in
    the shape of AwsCalls (call / paginate / client / where). Time is the polls: each ``sleep`` is
    one tick, and ``calls`` records (tick, operation, arguments), so a poll's calls can be counted.

    Behaviour, as AWS's: EnterStandby -> EnteringStandby, Standby a tick later, then draining in
    the group's target groups for ``drain_ticks`` ticks, then not registered. ExitStandby ->
    Pending, then Pending:Wait while a launch hook is not completed, then InService, then
    ``initial`` in the target groups for a tick, then healthy.
    """

    where = "region test"

    def __init__(self, groups, drain_ticks=2, hooks=()):
        self.tick, self.now = 0, 0.0
        self.calls = []
        self.groups, self.instances, self.targets = {}, {}, {}
        self.drain_ticks, self.hooks = drain_ticks, list(hooks)
        self.failing = {}  # (operation, key) -> error
        for name, (ids, arns) in groups.items():
            self.groups[name] = {"AutoScalingGroupName": name, "MinSize": 0, "MaxSize": len(ids),
                                 "DesiredCapacity": len(ids), "TargetGroupARNs": list(arns)}
            for iid in ids:
                self.instances[iid] = {"asg": name, "state": "InService", "at": 0, "hooks": set()}
                for arn in arns:
                    self.targets.setdefault(arn, {})[iid] = "healthy"

    # the clock
    def sleep(self, _seconds):
        self.tick += 1
        self.now += 1.0
        self._advance()

    def clock(self):
        return self.now

    def _advance(self):
        for iid, inst in self.instances.items():
            age = self.tick - inst["at"]
            arns = self.groups[inst["asg"]]["TargetGroupARNs"]
            if inst["state"] == "EnteringStandby" and age >= 1:
                inst.update(state="Standby", at=self.tick)
            elif inst["state"] == "Standby":
                for arn in arns:
                    if iid in self.targets[arn]:
                        self.targets[arn][iid] = "draining" if age < self.drain_ticks else None
                        if self.targets[arn][iid] is None:
                            del self.targets[arn][iid]
            elif inst["state"] == "Pending" and age >= 1:
                inst.update(state="Pending:Wait" if self.hooks else "InService", at=self.tick)
            elif inst["state"] == "Pending:Wait" and inst["hooks"] >= set(self.hooks):
                inst.update(state="InService", at=self.tick)
            elif inst["state"] == "InService":
                for arn in arns:
                    self.targets[arn][iid] = "initial" if iid not in self.targets[arn] else "healthy"

    # the AwsCalls surface
    def call(self, service_name, operation, action, **kwargs):
        self.calls.append((self.tick, operation, kwargs))
        key = kwargs.get("AutoScalingGroupName") or kwargs.get("TargetGroupArn")
        if (operation, key) in self.failing:
            raise self.failing[(operation, key)]
        return getattr(self, "_" + operation)(**kwargs)

    def paginate(self, service_name, operation, key, action, **kwargs):
        return self.call(service_name, operation, action, **kwargs)[key]

    def client(self, _service_name):
        return self

    def describe_target_health(self, TargetGroupArn):
        self.calls.append((self.tick, "describe_target_health", {"TargetGroupArn": TargetGroupArn}))
        if ("describe_target_health", TargetGroupArn) in self.failing:
            raise self.failing[("describe_target_health", TargetGroupArn)]
        return {"TargetHealthDescriptions": [{"Target": {"Id": iid, "Port": 80}, "TargetHealth": {"State": state}}
                                             for iid, state in self.targets.get(TargetGroupArn, {}).items()]}

    def _describe_auto_scaling_instances(self, InstanceIds):
        assert len(InstanceIds) <= 50
        return {"AutoScalingInstances": [
            {"InstanceId": iid, "AutoScalingGroupName": self.instances[iid]["asg"],
             "LifecycleState": self.instances[iid]["state"]} for iid in InstanceIds if iid in self.instances]}

    def _describe_auto_scaling_groups(self, AutoScalingGroupNames):
        return {"AutoScalingGroups": [dict(self.groups[n]) for n in AutoScalingGroupNames if n in self.groups]}

    def _describe_instances(self, Filters):
        return {"Reservations": []}

    def _describe_target_group_attributes(self, TargetGroupArn):
        return {"Attributes": [{"Key": "deregistration_delay.timeout_seconds", "Value": "30"}]}

    def _enter_standby(self, AutoScalingGroupName, InstanceIds, ShouldDecrementDesiredCapacity):
        assert len(InstanceIds) <= 20
        for iid in InstanceIds:
            self.instances[iid].update(state="EnteringStandby", at=self.tick)
        self.groups[AutoScalingGroupName]["DesiredCapacity"] -= len(InstanceIds) if ShouldDecrementDesiredCapacity else 0
        return {}

    def _exit_standby(self, AutoScalingGroupName, InstanceIds):
        assert len(InstanceIds) <= 20
        for iid in InstanceIds:
            self.instances[iid].update(state="Pending", at=self.tick)
        self.groups[AutoScalingGroupName]["DesiredCapacity"] += len(InstanceIds)
        return {}

    def _describe_lifecycle_hooks(self, AutoScalingGroupName):
        return {"LifecycleHooks": [{"LifecycleHookName": h, "LifecycleTransition": "autoscaling:EC2_INSTANCE_LAUNCHING"}
                                   for h in self.hooks]}

    def _complete_lifecycle_action(self, AutoScalingGroupName, LifecycleHookName, InstanceId, LifecycleActionResult):
        self.instances[InstanceId]["hooks"].add(LifecycleHookName)
        return {}

    # test helpers
    def count(self, operation, tick=None):
        return sum(1 for t, op, _kw in self.calls if op == operation and (tick is None or t == tick))

    def arguments(self, operation):
        return [kw for _t, op, kw in self.calls if op == operation]

    def terminate(self, instance_id):
        """Out of its group and, as on AWS once a terminated target has drained, its target groups."""
        del self.instances[instance_id]
        for targets in self.targets.values():
            targets.pop(instance_id, None)


def fake_ids(prefix, n):
    return [f"i-{prefix}{k:0{17 - len(prefix)}x}" for k in range(n)]


def move(fleet, batch, direction, **kwargs):
    kwargs.setdefault("poll_interval", 1.0)
    return service.move_batch(fleet, service.parse_instances(batch), direction, sleep=fleet.sleep,
                              clock=fleet.clock, **kwargs)


@pytest.mark.parametrize(("sizes", "group_tgs"), [
    ({"web": 25}, {"web": ["tg-a", "tg-b"]}),
    # 120 instances in two groups over three target groups, one shared.
    ({"web": 70, "api": 50}, {"web": ["tg-a", "tg-b"], "api": ["tg-b", "tg-c"]}),
], ids=["25-in-one-group", "120-in-two-groups"])
@pytest.mark.parametrize("direction", ["out", "in"])
def test_each_target_group_is_read_once_per_poll_whatever_the_batch_size(sizes, group_tgs, direction):
    arn = "arn:aws:elasticloadbalancing:eu-west-1:123456789012:targetgroup/{}/0123456789abcdef".format
    ids = {name: fake_ids(f"{n:02x}", size) for n, (name, size) in enumerate(sizes.items())}
    fleet = FakeFleet({name: (ids[name], [arn(t) for t in group_tgs[name]]) for name in sizes}, drain_ticks=3)
    batch = [entry for name in sizes for entry in entries(ids[name], name)]
    if direction == "in":
        move(fleet, batch, "out")
        fleet.calls.clear()
    result = move(fleet, batch, direction)
    assert result["failed_instances"] == [] and len(result["ok_instances"]) == sum(sizes.values())
    standby = "enter_standby" if direction == "out" else "exit_standby"
    chunks = [len(kw["InstanceIds"]) for kw in fleet.arguments(standby)]  # by group name: api, then web
    assert chunks == [n for _name, size in sorted(sizes.items())
                      for n in [20] * (size // 20) + ([size % 20] if size % 20 else [])]
    n_tgs = len({t for tgs in group_tgs.values() for t in tgs})
    describe_calls = math.ceil(sum(sizes.values()) / 50)
    first, last = fleet.calls[0][0], fleet.tick  # a poll per tick
    polls = last - first + 1
    assert polls >= 4  # the lifecycle state, then the drain (or health), took polls
    for tick in range(first, last + 1):  # every poll, exactly
        # The first poll finds them on their way to Standby (or InService): no target group read yet.
        assert fleet.count("describe_target_health", tick) == (0 if tick == first else n_tgs), tick
        # The first: the look-up's read too; the last: the read confirming those whose target groups
        # reached the goal (all of them, here) are still where they should be.
        assert fleet.count("describe_auto_scaling_instances", tick) == describe_calls * (2 if tick in (first, last) else 1)
    assert fleet.count("describe_target_health") == n_tgs * (polls - 1)
    assert all(len(kw["InstanceIds"]) <= 50 for kw in fleet.arguments("describe_auto_scaling_instances"))
    assert fleet.count("describe_auto_scaling_groups") == 1
    assert result["waited_seconds"] == polls - 1 and result["polls"] == polls


def test_launch_hooks_are_completed_once_per_instance_and_described_once_per_group():
    arn = "arn:aws:elasticloadbalancing:eu-west-1:123456789012:targetgroup/web/0123456789abcdef"
    ids = fake_ids("a", 3)
    fleet = FakeFleet({"web": (ids, [arn])}, hooks=["boot", "warm"])
    move(fleet, entries(ids, "web"), "out")
    fleet.calls.clear()
    result = move(fleet, entries(ids, "web"), "in")
    assert result["ok_instances"] == ids
    assert fleet.count("describe_lifecycle_hooks") == 1
    completed = sorted((kw["InstanceId"], kw["LifecycleHookName"]) for kw in fleet.arguments("complete_lifecycle_action"))
    assert completed == [(iid, hook) for iid in ids for hook in ("boot", "warm")]
    assert all(result["instances"][iid]["lifecycle_hooks"] == ["boot", "warm"] for iid in ids)
    assert all(result["instances"][iid]["lifecycle_state"] == "InService" for iid in ids)


def test_a_failure_concerns_its_instances_only():
    arn = "arn:aws:elasticloadbalancing:eu-west-1:123456789012:targetgroup/{}/0123456789abcdef".format
    web, api, jobs = fake_ids("a", 3), fake_ids("b", 2), fake_ids("c", 2)
    fleet = FakeFleet({"web": (web, [arn("web")]), "api": (api, [arn("api")]), "jobs": (jobs, [arn("web")])})
    # api's target group cannot be read; jobs' EnterStandby is refused; web[0] is terminated mid-wait.
    missing = botocore.exceptions.ClientError({"Error": {"Code": "TargetGroupNotFound", "Message": "gone"}},
                                              "DescribeTargetHealth")
    fleet.failing[("describe_target_health", arn("api"))] = missing
    fleet.failing[("enter_standby", "jobs")] = FleetAWSError("cannot put i-c..., in Standby in jobs: access denied")
    original = fleet.sleep

    def sleep(seconds):
        original(seconds)
        if fleet.tick == 2:
            fleet.terminate(web[0])

    fleet.sleep = sleep
    result = move(fleet, [*entries(web, "web"), *entries(api, "api"), *entries(jobs, "jobs")], "out")
    assert result["ok_instances"] == web[1:]
    assert result["failed_instances"] == sorted([web[0], *api, *jobs])
    errors = {iid: e["error"] for iid, e in result["instances"].items()}
    assert errors[web[0]].startswith(f"{web[0]} left Auto Scaling group 'web' (terminated or detached)")
    assert all(errors[i] == f"target group {arn('api')} not found (region test)" for i in api)
    assert all(errors[i] == "cannot put i-c..., in Standby in jobs: access denied" for i in jobs)
    # The failed ones were dropped from the later polls: api's target group read once, jobs never polled.
    assert [kw["TargetGroupArn"] for kw in fleet.arguments("describe_target_health")].count(arn("api")) == 1
    polled = {i for kw in fleet.arguments("describe_auto_scaling_instances")[1:] for i in kw["InstanceIds"]}
    assert not polled & set(jobs)


@pytest.mark.parametrize("direction", ["out", "in"])
def test_an_instance_terminated_between_the_reads_of_a_poll_is_not_taken_for_done(direction):
    # Gone from its target groups (terminated: deregistered), so the target read of the poll that
    # had just found it in Standby (or InService) shows what the goal looks like for "out".
    arn = "arn:aws:elasticloadbalancing:eu-west-1:123456789012:targetgroup/web/0123456789abcdef"
    web = fake_ids("a", 3)
    fleet = FakeFleet({"web": (web, [arn])})
    if direction == "in":
        move(fleet, entries(web, "web"), "out")
    read = fleet.describe_target_health

    def describe_target_health(TargetGroupArn):
        state = fleet.instances.get(web[0], {}).get("state")
        if (state == "Standby" and web[0] not in fleet.targets[arn]) or state == "InService":
            fleet.terminate(web[0])
        return read(TargetGroupArn)

    fleet.describe_target_health = describe_target_health
    result = move(fleet, entries(web, "web"), direction)
    assert result["failed_instances"] == [web[0]] and result["ok_instances"] == web[1:]
    assert result["instances"][web[0]]["lifecycle_state"] == "detached"
    assert result["instances"][web[0]]["error"] == (
        f"{web[0]} left Auto Scaling group 'web' (terminated or detached) while waiting for its target groups")


def test_a_failure_of_the_whole_call_is_raised():
    arn = "arn:aws:elasticloadbalancing:eu-west-1:123456789012:targetgroup/web/0123456789abcdef"
    ids = fake_ids("a", 2)
    fleet = FakeFleet({"web": (ids, [arn])})
    try:
        raise botocore.exceptions.NoCredentialsError()
    except botocore.exceptions.NoCredentialsError as cause:
        error = FleetAWSError("cannot put ... in Standby: no AWS credentials found")
        error.__cause__ = cause
    fleet.failing[("enter_standby", "web")] = error
    with pytest.raises(FleetAWSError, match="no AWS credentials found"):
        move(fleet, entries(ids, "web"), "out")


def test_timeouts_name_what_is_missing():
    arn = "arn:aws:elasticloadbalancing:eu-west-1:123456789012:targetgroup/web/0123456789abcdef"
    ids = fake_ids("a", 2)
    fleet = FakeFleet({"web": (ids, [arn])}, drain_ticks=100)
    result = move(fleet, entries(ids, "web"), "out", timeout=3)
    assert result["failed_instances"] == ids
    for iid in ids:
        assert result["instances"][iid]["error"] == f"{iid} not deregistered in every target group after 3s: web: port 80 draining"
        assert result["instances"][iid]["lifecycle_state"] == "Standby"


@pytest.mark.parametrize(("batch", "expected"), [
    ([{"instance_id": "i-0123456789abcdef0", "asg_name": "web", "target_group_arns": None}], None),
    ([{"instance_id": "i-01234567", "asg_name": None}], None),  # outside any group, behind no load balancer
    (["i-0123456789abcdef0"], 'invalid instances[0] "i-0123456789abcdef0": each entry is a dict'),
    ([{"instance_id": "i-0123456789abcdef0", "asg_name": 3}], "asg_name must be an Auto Scaling group name"),
    ([{"instance_id": "i-0123456789abcdef0", "asg_name": None, "target_group_arns": "arn:aws:x"}],
     "target_group_arns must be a list of target group ARNs"),
    ([{"instance_id": "i-0123456789ABCDEF0"}], "instance_id must be an EC2 instance ID"),
])
def test_parse_instances(batch, expected):
    if expected is None:
        assert [m.id for m in service.parse_instances(batch)] == [e["instance_id"] for e in batch]
    else:
        with pytest.raises(service.DeployError) as failure:
            service.parse_instances(batch)
        assert expected in str(failure.value) and "\n" not in str(failure.value)


def test_capacity_refusals_name_group_desired_count_and_limit():
    group = {"AutoScalingGroupName": "web", "DesiredCapacity": 4, "MinSize": 3, "MaxSize": 5}
    assert service.capacity_refusal(group, ["i-1"], "out") is None
    assert service.capacity_refusal(group, ["i-1", "i-2"], "out").startswith(
        "cannot put i-1, i-2 in Standby decrementing web's desired capacity: 4 - 2 is below the group's minimum size 3")
    assert service.capacity_refusal(group, ["i-1", "i-2"], "out", decrement=False) is None
    assert service.capacity_refusal(group, ["i-1"], "in") is None
    assert service.capacity_refusal(group, ["i-1", "i-2"], "in").startswith(
        "cannot move i-1, i-2 out of Standby: web's desired capacity 4 + 2 would exceed its maximum size 5")

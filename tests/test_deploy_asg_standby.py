"""fleet_asg_standby against the emulator: Standby with a drain wait across every target group
of the ASG, back InService with a health wait, idempotence, check mode, clear failures.

moto does not deregister Standby instances from target groups (AWS does); the tests that need
it run deploy_support.StandbyStandIn, a thread that does exactly that to the emulator, openly."""

from __future__ import annotations

import sys

import inventory_fleet
import pytest
from deploy_support import StandbyStandIn, client, lifecycle, registered, run_module, run_tasks, web_fleet

pytestmark = pytest.mark.emulator

FAST = {"poll_interval": 0.2}


def desired(name="web"):
    return client("autoscaling").describe_auto_scaling_groups(AutoScalingGroupNames=[name])["AutoScalingGroups"][0]["DesiredCapacity"]


def test_standby_drains_from_every_target_group_then_back_in_service_healthy(aws):
    ids, arns, _ = web_fleet(size=3, tg_names=("web", "api"), deregistration_delays={"web": 30, "api": 5})
    target = ids[0]
    with StandbyStandIn("web", drain=2.0) as stand_in:
        enter, again = run_tasks([
            {"name": "standby", "ec2fleet.fleet.asg_standby": {"instance_id": target, "asg_name": "web", **FAST}},
            {"name": "standby again", "ec2fleet.fleet.asg_standby": {"instance_id": target, **FAST}},
        ])
        back, back_again = run_tasks([
            {"name": "in service", "ec2fleet.fleet.asg_standby": {"instance_id": target, "state": "inservice", **FAST}},
            {"name": "in service again", "ec2fleet.fleet.asg_standby": {"instance_id": target, "state": "inservice", **FAST}},
        ])
    assert enter["changed"] is True
    assert enter["previous_lifecycle_state"] == "InService" and enter["lifecycle_state"] == "Standby"
    assert enter["desired_capacity"] == 2  # decremented: the group launches no replacement
    assert enter["deregistration_delays"] == {arns[0]: 30, arns[1]: 5}
    assert enter["target_groups"] == sorted(arns)
    # It waited for the (stand-in) drain of both target groups, and ended deregistered from both.
    assert enter["target_wait_seconds"] >= 1.5
    assert enter["target_states"] == {arns[0]: [], arns[1]: []}
    assert sorted(stand_in.deregistered) == sorted((arn, target) for arn in arns)
    assert "deregistered from 2 target group(s)" in enter["msg"]

    assert again["changed"] is False and "already in Standby" in again["msg"]

    assert back["changed"] is True and back["lifecycle_state"] == "InService"
    assert back["desired_capacity"] == 3
    for arn in arns:
        assert [e["state"] for e in back["target_states"][arn]] == ["healthy"]
    assert back_again["changed"] is False and back_again["target_wait_seconds"] < 1  # one poll
    assert lifecycle(target) == "InService"
    assert len(client("autoscaling").describe_auto_scaling_groups(
        AutoScalingGroupNames=["web"])["AutoScalingGroups"][0]["Instances"]) == 3


def test_drain_timeout_names_each_target_group_state(aws):
    """Without anyone deregistering it (bare moto), the drain wait must time out, not pass."""
    ids, _arns, _ = web_fleet(size=2)
    result = run_module("ec2fleet.fleet.asg_standby", {"instance_id": ids[0], "timeout": 2, **FAST})
    assert result["failed"] is True
    assert result["msg"].startswith(f"{ids[0]} not deregistered in every target group after ")
    assert result["msg"].endswith("web: port 80 healthy")
    assert lifecycle(ids[0]) == "Standby"  # what happened stays visible for the playbook's cleanup


def in_service_but_stopped(ids):
    """ids[0] back InService (through the API) but stopped: `unused` in its target group."""
    autoscaling = client("autoscaling")
    autoscaling.enter_standby(AutoScalingGroupName="web", InstanceIds=[ids[0]], ShouldDecrementDesiredCapacity=True)
    autoscaling.exit_standby(AutoScalingGroupName="web", InstanceIds=[ids[0]])
    client("ec2").stop_instances(InstanceIds=[ids[0]])


def test_rerun_waits_until_healthy(aws):
    """Already InService (an interrupted earlier run): no change, but it still waits for health.

    The play's first task starts a background process that starts the stopped instance 3 s later,
    so the module runs while the emulator still reports it `unused`."""
    ids, arns, _ = web_fleet(size=2)
    in_service_but_stopped(ids)
    start_later = (f"import time, boto3; time.sleep(3); "
                   f"boto3.client('ec2').start_instances(InstanceIds=['{ids[0]}'])")
    _boot, result = run_tasks([
        {"name": "the host boots a little later",
         "ansible.builtin.shell": f"nohup {sys.executable} -c \"{start_later}\" >/dev/null 2>&1 &",
         "changed_when": False},
        {"name": "in service", "ec2fleet.fleet.asg_standby": {"instance_id": ids[0], "state": "inservice", "timeout": 60, **FAST}},
    ])
    assert result["changed"] is False and "already out of Standby" in result["msg"]
    assert result["target_wait_seconds"] > 0
    assert [e["state"] for e in result["target_states"][arns[0]]] == ["healthy"]


def test_health_timeout_names_each_target_group_state(aws):
    ids, _arns, _ = web_fleet(size=2)
    in_service_but_stopped(ids)  # and never started: never healthy
    result = run_module("ec2fleet.fleet.asg_standby", {"instance_id": ids[0], "state": "inservice", "timeout": 2, **FAST})
    assert result["failed"] is True
    assert result["msg"].startswith(f"{ids[0]} not healthy in every target group after ")
    assert result["msg"].endswith("web: port 80 unused (Target.InvalidState: Target is in the stopped state)")


def test_check_mode_reports_and_changes_nothing(aws):
    ids, _arns, _ = web_fleet(size=2)
    result = run_module("ec2fleet.fleet.asg_standby", {"instance_id": ids[0]}, check=True)
    assert result["changed"] is True and result["msg"] == f"would put {ids[0]} in Standby in web"
    assert lifecycle(ids[0]) == "InService" and desired() == 2
    client("autoscaling").enter_standby(AutoScalingGroupName="web", InstanceIds=[ids[0]],
                                        ShouldDecrementDesiredCapacity=True)
    result = run_module("ec2fleet.fleet.asg_standby", {"instance_id": ids[0], "state": "inservice"}, check=True)
    assert result["changed"] is True and "would move" in result["msg"]
    assert lifecycle(ids[0]) == "Standby"


def test_without_decrement_the_group_keeps_its_capacity(aws):
    ids, _arns, _ = web_fleet(size=2)
    result = run_module("ec2fleet.fleet.asg_standby", {"instance_id": ids[0], "wait": False,
                                              "should_decrement_desired_capacity": False})
    assert result["changed"] is True and "(not waited)" in result["msg"]
    assert result["desired_capacity"] == 2 and lifecycle(ids[0]) == "Standby"


def test_failures_are_one_clear_line(aws):
    ids, _arns, fleet = web_fleet(size=1, min_size=1)
    lonely = client("ec2").run_instances(ImageId="ami-12c6146b", MinCount=1, MaxCount=1,
                                         SubnetId=fleet.private_subnets[0])["Instances"][0]["InstanceId"]
    cases = [
        ({"instance_id": "i-0123456789abcdef0"}, "EC2 instance i-0123456789abcdef0 not found (region us-east-1"),
        ({"instance_id": lonely}, f"{lonely} is not in any Auto Scaling group (region us-east-1"),
        ({"instance_id": ids[0], "asg_name": "api"}, f"{ids[0]} belongs to Auto Scaling group 'web', not 'api'"),
        ({"instance_id": ids[0], "timeout": 5},
         f"cannot put {ids[0]} in Standby decrementing web's desired capacity: 1 - 1 is below the group's minimum size 1"),
    ]
    # A group at its maximum size cannot take an instance back from Standby (AWS refuses too).
    full = inventory_fleet.add_asg(fleet, "full", 2)[0]
    autoscaling = client("autoscaling")
    autoscaling.update_auto_scaling_group(AutoScalingGroupName="full", MaxSize=2)
    autoscaling.enter_standby(AutoScalingGroupName="full", InstanceIds=[full], ShouldDecrementDesiredCapacity=False)
    cases.append(({"instance_id": full, "state": "inservice", "timeout": 5},
                  f"cannot move {full} out of Standby: full's desired capacity 2 + 1 would exceed its maximum size 2"))
    tasks = [{"name": f"case {n}", "ec2fleet.fleet.asg_standby": args, "ignore_errors": True} for n, (args, _) in enumerate(cases)]
    results = run_tasks(tasks)
    for result, (_args, expected) in zip(results, cases, strict=True):
        assert result["failed"] is True
        assert result["msg"].startswith(expected), result["msg"]
        assert "\n" not in result["msg"]
    assert lifecycle(ids[0]) == "InService"
    assert registered(_arns[0], ids[0])


# -- launch lifecycle hooks on ExitStandby ------------------------------------------------------
# moto returns an instance to InService at once on ExitStandby and fails CompleteLifecycleAction:
# the hook handling is driven here by a scripted stand-in for the Auto Scaling API (only that).

class ScriptedAutoScaling:
    """TEST DOUBLE of the three Auto Scaling calls involved: the instance's lifecycle states in
    order, the group's hooks, and a record of every completion and heartbeat."""

    def __init__(self, states, hooks):
        self.states, self.hooks, self.calls = list(states), hooks, []

    def call(self, service, operation, action, **kwargs):
        self.calls.append((operation, kwargs))
        if operation == "describe_auto_scaling_instances":
            state = self.states.pop(0) if len(self.states) > 1 else self.states[0]
            return {"AutoScalingInstances": [{"LifecycleState": state, "AutoScalingGroupName": "web"}]}
        if operation == "describe_lifecycle_hooks":
            return {"LifecycleHooks": self.hooks}
        return {}


HOOKS = [{"LifecycleHookName": "boot", "LifecycleTransition": "autoscaling:EC2_INSTANCE_LAUNCHING"},
         {"LifecycleHookName": "bye", "LifecycleTransition": "autoscaling:EC2_INSTANCE_TERMINATING"}]


def _wait(api, mode):
    """The lifecycle states a wait would see, handed to the hooks one by one."""
    from ansible_collections.ec2fleet.fleet.plugins.modules.asg_standby import LaunchHooks

    hooks = LaunchHooks(api, "web", "i-1", mode)
    for state in api.states:
        hooks.on_state(state)
    return hooks


def test_launch_hooks_on_exit_standby_are_completed_once():
    api = ScriptedAutoScaling(["Pending", "Pending:Wait", "Pending:Wait", "Pending:Proceed", "InService"], HOOKS)
    hooks = _wait(api, "complete")
    completes = [kw for op, kw in api.calls if op == "complete_lifecycle_action"]
    assert completes == [{"AutoScalingGroupName": "web", "LifecycleHookName": "boot", "InstanceId": "i-1",
                          "LifecycleActionResult": "CONTINUE"}]
    assert hooks.handled == ["boot"]


def test_launch_hooks_left_to_their_owner_get_heartbeats():
    api = ScriptedAutoScaling(["Pending:Wait", "Pending:Wait", "InService"], HOOKS)
    hooks = _wait(api, "heartbeat")
    assert not [op for op, _ in api.calls if op == "complete_lifecycle_action"]
    beats = [kw["LifecycleHookName"] for op, kw in api.calls if op == "record_lifecycle_action_heartbeat"]
    assert beats == ["boot"]  # one beat per minute at most
    assert hooks.handled == ["boot"]


def test_no_hooks_no_calls_when_the_instance_goes_straight_in():
    api = ScriptedAutoScaling(["InService"], HOOKS)
    _wait(api, "complete")
    assert api.calls == []

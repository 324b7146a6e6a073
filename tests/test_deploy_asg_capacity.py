"""ec2fleet.fleet.asg_capacity against the emulator: lower MinSize for a fixed-size group, surge
and wait for the new instance to serve, remove exactly the surge instances and put the sizes
back; refusals; check mode."""

from __future__ import annotations

import pytest
from deploy_support import client, run_module, web_fleet

pytestmark = pytest.mark.emulator

FAST = {"poll_interval": 0.2, "timeout": 60}


def group(name="web"):
    return client("autoscaling").describe_auto_scaling_groups(AutoScalingGroupNames=[name])["AutoScalingGroups"][0]


def sizes(name="web"):
    g = group(name)
    return g["MinSize"], g["DesiredCapacity"], g["MaxSize"]


def test_fixed_size_group_lowered_then_restored(aws):
    web_fleet(size=3, min_size=3)
    client("autoscaling").update_auto_scaling_group(AutoScalingGroupName="web", MaxSize=3)
    lowered = run_module("ec2fleet.fleet.asg_capacity", {"name": "web", "min_size": 2, **FAST})
    assert lowered["changed"] and lowered["previous"] == {"min_size": 3, "max_size": 3, "desired_capacity": 3}
    assert sizes() == (2, 3, 3)
    # EnterStandby with decrement now works on the fixed-size group.
    iid = group()["Instances"][0]["InstanceId"]
    client("autoscaling").enter_standby(AutoScalingGroupName="web", InstanceIds=[iid], ShouldDecrementDesiredCapacity=True)
    client("autoscaling").exit_standby(AutoScalingGroupName="web", InstanceIds=[iid])
    restored = run_module("ec2fleet.fleet.asg_capacity", {"name": "web", "min_size": 3, **FAST})
    assert restored["changed"] and sizes() == (3, 3, 3)
    again = run_module("ec2fleet.fleet.asg_capacity", {"name": "web", "min_size": 3, **FAST})
    assert again["changed"] is False


def test_surge_waits_for_the_new_instance_then_removes_exactly_it(aws):
    before_ids, arns, _ = web_fleet(size=2, min_size=2)
    client("autoscaling").update_auto_scaling_group(AutoScalingGroupName="web", MaxSize=2)
    surge = run_module("ec2fleet.fleet.asg_capacity", {"name": "web", "max_size": 3, "desired_capacity": 3, **FAST})
    assert surge["changed"] and len(surge["launched"]) == 1
    assert surge["launched"][0] not in before_ids
    assert sizes() == (2, 3, 3)
    health = client("elbv2").describe_target_health(TargetGroupArn=arns[0])["TargetHealthDescriptions"]
    assert surge["launched"][0] in {h["Target"]["Id"] for h in health}
    back = run_module("ec2fleet.fleet.asg_capacity", {"name": "web", "remove_instances": surge["launched"],
                                                      "max_size": 2, **FAST})
    assert back["changed"] and back["removed"] == surge["launched"]
    assert sizes() == (2, 2, 2)
    assert sorted(i["InstanceId"] for i in group()["Instances"]) == sorted(before_ids)


def test_check_mode_changes_nothing(aws):
    web_fleet(size=2, min_size=2)
    result = run_module("ec2fleet.fleet.asg_capacity", {"name": "web", "min_size": 1, **FAST}, check=True)
    assert result["changed"] and result["current"]["min_size"] == 1
    assert sizes()[0] == 2


def test_sizes_out_of_order_are_refused_in_one_line(aws):
    web_fleet(size=2)
    result = run_module("ec2fleet.fleet.asg_capacity", {"name": "web", "min_size": 5, **FAST})
    assert result.get("failed")
    assert result["msg"] == ("web: sizes must keep MinSize <= DesiredCapacity <= MaxSize, asked for min 5, "
                             f"desired 2, max {group()['MaxSize']}")


def test_unknown_group(aws):
    result = run_module("ec2fleet.fleet.asg_capacity", {"name": "nope", "min_size": 1, **FAST})
    assert result.get("failed") and "nope" in result["msg"] and "not found" in result["msg"]

"""ec2fleet.fleet.target_tracking_policy against the emulator: written once, updated when it differs,
check mode and diff, deleted, one-line errors."""

from __future__ import annotations

import pytest
from deploy_support import client, run_module, web_fleet

pytestmark = pytest.mark.emulator
POLICY = {"name": "web-cpu-target", "asg_name": "web", "target_value": 50, "estimated_instance_warmup": 300}


def policies():
    return client("autoscaling").describe_policies(AutoScalingGroupName="web")["ScalingPolicies"]


def test_written_once_updated_when_it_differs_and_deleted(aws):
    web_fleet(size=1)
    checked = run_module("ec2fleet.fleet.target_tracking_policy", POLICY, check=True)
    assert checked["changed"] is True and policies() == []
    made = run_module("ec2fleet.fleet.target_tracking_policy", POLICY)
    assert made["changed"] is True and made["policy_arn"]
    (policy,) = policies()
    assert policy["TargetTrackingConfiguration"]["PredefinedMetricSpecification"]["PredefinedMetricType"] == \
        "ASGAverageCPUUtilization"
    assert policy["EstimatedInstanceWarmup"] == 300
    assert run_module("ec2fleet.fleet.target_tracking_policy", POLICY)["changed"] is False
    lower = run_module("ec2fleet.fleet.target_tracking_policy", {**POLICY, "target_value": 40})
    assert lower["changed"] is True
    assert lower["diff"]["before"]["TargetTrackingConfiguration"]["TargetValue"] == 50.0
    assert policies()[0]["TargetTrackingConfiguration"]["TargetValue"] == 40.0
    assert run_module("ec2fleet.fleet.target_tracking_policy", {**POLICY, "state": "absent"}, check=True)["changed"]
    assert len(policies()) == 1
    assert run_module("ec2fleet.fleet.target_tracking_policy", {**POLICY, "state": "absent"})["changed"] is True
    assert policies() == []


@pytest.mark.parametrize(("args", "message"), [
    ({**POLICY, "asg_name": "nope"}, "Auto Scaling group 'nope' not found"),
    ({**POLICY, "metric": "ALBRequestCountPerTarget"}, "resource_label goes with metric=ALBRequestCountPerTarget"),
    ({"name": "p", "asg_name": "web"}, "target_value is required with state=present"),
])
def test_bad_parameters_fail_in_one_line(aws, args, message):
    web_fleet(size=1)
    result = run_module("ec2fleet.fleet.target_tracking_policy", args)
    assert result["failed"] is True and message in result["msg"], result
    assert policies() == []

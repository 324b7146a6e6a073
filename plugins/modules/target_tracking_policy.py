#!/usr/bin/python
"""Ansible module: an Auto Scaling group's target tracking scaling policy, idempotent, with check
mode (community.aws.autoscaling_policy has no check mode)."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: target_tracking_policy
short_description: Manage an Auto Scaling group's target tracking scaling policy
description:
  - Creates, updates or deletes one target tracking scaling policy of an Auto Scaling group, on
    one of the predefined metrics (average CPU, network in or out per instance, or requests per
    target of an Application Load Balancer target group).
  - The policy is compared with what C(DescribePolicies) returns, defaults filled in (C(DisableScaleIn)
    false), and written with C(PutScalingPolicy) only when it differs. On AWS, the group then keeps
    the metric near O(target_value) by itself, with alarms AWS creates and owns for the policy.
  - Check mode reports what would change without writing; with C(--diff), the policy before and
    after. M(community.aws.autoscaling_policy) supports no check mode, hence this module.
version_added: "1.0.0"
author: ec2-fleet project (!UNKNOWN)
extends_documentation_fragment:
  - ec2fleet.fleet.aws
  - ec2fleet.fleet.aws.retries
options:
  name:
    description: The policy's name.
    type: str
    required: true
  asg_name:
    description: The Auto Scaling group; it must exist.
    type: str
    required: true
  state:
    description: V(present) or V(absent).
    type: str
    choices: [present, absent]
    default: present
  metric:
    description: The predefined metric the group tracks.
    type: str
    choices: [ASGAverageCPUUtilization, ASGAverageNetworkIn, ASGAverageNetworkOut, ALBRequestCountPerTarget]
    default: ASGAverageCPUUtilization
  resource_label:
    description:
      - For V(ALBRequestCountPerTarget) only (and then required) -
        C(app/<load balancer>/<id>/targetgroup/<target group>/<id>).
    type: str
  target_value:
    description: The value the group keeps the metric near (percent CPU, bytes, or requests per target).
    type: float
  disable_scale_in:
    description: With V(true) the policy only adds instances.
    type: bool
    default: false
  estimated_instance_warmup:
    description: Seconds until a new instance's metrics count; default the group's default instance warmup.
    type: int
notes:
  - "IAM: C(autoscaling:DescribeAutoScalingGroups), C(autoscaling:DescribePolicies),
    C(autoscaling:PutScalingPolicy), C(autoscaling:DeletePolicy) (and C(cloudwatch:PutMetricAlarm),
    C(cloudwatch:DeleteAlarms) for the alarms AWS creates for the policy)."
seealso:
  - module: community.aws.autoscaling_policy
"""

EXAMPLES = r"""
- name: Keep the web group's average CPU near 50 %
  ec2fleet.fleet.target_tracking_policy:
    name: web-cpu-target
    asg_name: web
    metric: ASGAverageCPUUtilization
    target_value: 50
    estimated_instance_warmup: 300
"""

RETURN = r"""
policy:
  description: The policy as written (or as found, when nothing changed), in the API's names; empty when absent.
  returned: always
  type: dict
  sample: {"PolicyName": "web-cpu-target", "AutoScalingGroupName": "web", "PolicyType": "TargetTrackingScaling",
           "TargetTrackingConfiguration": {"PredefinedMetricSpecification": {"PredefinedMetricType": "ASGAverageCPUUtilization"},
                                           "TargetValue": 50.0, "DisableScaleIn": false}}
policy_arn:
  description: The policy's ARN (null in check mode before it exists, and when absent).
  returned: always
  type: str
api_calls:
  description: AWS API operations this call made, by operation name.
  returned: always
  type: dict
"""

from ansible_collections.ec2fleet.fleet.plugins.module_utils.aws import AwsCalls
from ansible_collections.ec2fleet.fleet.plugins.module_utils.deploy import (
    DeployError,
    argument_spec,
    describe_asg,
    run_module,
)


def _shape(name, asg_name, metric, resource_label, target_value, disable_scale_in, warmup):
    spec = {"PredefinedMetricType": metric}
    if resource_label:
        spec["ResourceLabel"] = resource_label
    policy = {"PolicyName": name, "AutoScalingGroupName": asg_name, "PolicyType": "TargetTrackingScaling",
              "TargetTrackingConfiguration": {"PredefinedMetricSpecification": spec,
                                              "TargetValue": float(target_value),
                                              "DisableScaleIn": bool(disable_scale_in)}}
    if warmup is not None:
        policy["EstimatedInstanceWarmup"] = int(warmup)
    return policy


def desired(params):
    if params["target_value"] is None:
        raise DeployError("target_value is required with state=present")
    if (params["metric"] == "ALBRequestCountPerTarget") != bool(params["resource_label"]):
        raise DeployError("resource_label goes with metric=ALBRequestCountPerTarget, and only with it")
    return _shape(params["name"], params["asg_name"], params["metric"], params["resource_label"],
                  params["target_value"], params["disable_scale_in"], params["estimated_instance_warmup"])


def current(aws, params):
    """(the existing policy in desired()'s shape, its ARN), or (None, None)."""
    found = aws.call("autoscaling", "describe_policies", f"describe scaling policy {params['name']}",
                     AutoScalingGroupName=params["asg_name"], PolicyNames=[params["name"]])["ScalingPolicies"]
    if not found:
        return None, None
    policy = found[0]
    if policy.get("PolicyType") != "TargetTrackingScaling":
        return {"PolicyName": policy["PolicyName"], "PolicyType": policy.get("PolicyType")}, policy.get("PolicyARN")
    config = policy.get("TargetTrackingConfiguration", {})
    spec = config.get("PredefinedMetricSpecification") or {}
    return _shape(policy["PolicyName"], policy["AutoScalingGroupName"], spec.get("PredefinedMetricType"),
                  spec.get("ResourceLabel"), config.get("TargetValue", 0), config.get("DisableScaleIn", False),
                  policy.get("EstimatedInstanceWarmup")), policy.get("PolicyARN")


def run(module):
    params = module.params
    aws = AwsCalls(params)
    describe_asg(aws, params["asg_name"])  # one clear line when the group does not exist
    before, arn = current(aws, params)
    if params["state"] == "absent":
        if before is not None and not module.check_mode:
            aws.call("autoscaling", "delete_policy", f"delete scaling policy {params['name']}",
                     AutoScalingGroupName=params["asg_name"], PolicyName=params["name"])
        return {"changed": before is not None, "policy": {}, "policy_arn": None,
                "diff": {"before": before or {}, "after": {}}, "api_calls": aws.sorted_api_calls()}
    after = desired(params)
    changed = before != after
    if changed and not module.check_mode:
        arn = aws.call("autoscaling", "put_scaling_policy", f"write scaling policy {params['name']}",
                       **after).get("PolicyARN") or current(aws, params)[1]  # the emulator's answer has no ARN
    return {"changed": changed, "policy": after, "policy_arn": arn, "diff": {"before": before or {}, "after": after},
            "api_calls": aws.sorted_api_calls()}


ARGUMENT_SPEC = argument_spec(
    name={"type": "str", "required": True},
    asg_name={"type": "str", "required": True},
    state={"type": "str", "choices": ["present", "absent"], "default": "present"},
    metric={"type": "str", "default": "ASGAverageCPUUtilization",
            "choices": ["ASGAverageCPUUtilization", "ASGAverageNetworkIn", "ASGAverageNetworkOut",
                        "ALBRequestCountPerTarget"]},
    resource_label={"type": "str"},
    target_value={"type": "float"},
    disable_scale_in={"type": "bool", "default": False},
    estimated_instance_warmup={"type": "int"},
)


def main():
    run_module(run, ARGUMENT_SPEC)


if __name__ == "__main__":
    main()

#!/usr/bin/python
"""Ansible module: set an Auto Scaling group's size limits for a deploy (and put them back),
waiting for what a surge launches, and removing the instances a surge added."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: asg_capacity
short_description: Change an Auto Scaling group's MinSize, MaxSize and DesiredCapacity for a deploy, and put them back
description:
  - Sets the given sizes of the group with one C(UpdateAutoScalingGroup) call (only those that
    differ). A rolling deploy uses it to lower C(MinSize) so C(EnterStandby) may decrement the
    desired capacity of a fixed-size group, or to surge (raise C(MaxSize) and C(DesiredCapacity))
    so the group keeps its serving capacity while instances are out of service; and again to put
    the recorded sizes back.
  - When O(desired_capacity) is raised and O(wait=true), waits until the group has that many
    instances C(InService) and C(Healthy), each healthy in every target group of the group (one
    C(DescribeTargetHealth) per target group per poll), and returns the instances it launched.
  - O(remove_instances) terminates those instances through the group with
    C(ShouldDecrementDesiredCapacity=true) (the instances a surge added, so the group's termination
    policy does not pick freshly deployed ones) before the sizes are set, waiting until they have
    left the group. Instances no longer in the group are skipped.
  - Idempotent; supports check mode (reports what would change, calls nothing that changes).
version_added: "1.0.0"
author: ec2-fleet project (!UNKNOWN)
extends_documentation_fragment:
  - ec2fleet.fleet.aws
  - ec2fleet.fleet.aws.retries
options:
  name:
    description: The Auto Scaling group.
    type: str
    required: true
    aliases: [asg_name]
  min_size:
    description: MinSize to set.
    type: int
  max_size:
    description: MaxSize to set.
    type: int
  desired_capacity:
    description: DesiredCapacity to set.
    type: int
  remove_instances:
    description: Instances to terminate through the group, decrementing its desired capacity.
    type: list
    elements: str
    default: []
  wait:
    description: Wait for a raised desired capacity to be InService and healthy, and for removed instances to leave.
    type: bool
    default: true
  timeout:
    description: Seconds to wait.
    type: int
    default: 900
  poll_interval:
    description: Seconds between two polls.
    type: float
    default: 5
notes:
  - Needs C(autoscaling:DescribeAutoScalingGroups), C(autoscaling:UpdateAutoScalingGroup),
    C(autoscaling:TerminateInstanceInAutoScalingGroup) and C(elasticloadbalancing:DescribeTargetHealth).
"""

EXAMPLES = r"""
- name: Let a fixed-size group take one instance out of service (MinSize 4 -> 3)
  ec2fleet.fleet.asg_capacity:
    name: web
    min_size: 3
  delegate_to: localhost

- name: Surge by one, wait until the new instance serves
  ec2fleet.fleet.asg_capacity:
    name: web
    max_size: 5
    desired_capacity: 5
  delegate_to: localhost
  register: surge

- name: Remove the surge instance and put the sizes back
  ec2fleet.fleet.asg_capacity:
    name: web
    remove_instances: "{{ surge.launched }}"
    min_size: 4
    max_size: 4
  delegate_to: localhost
"""

RETURN = r"""
previous:
  description: C(min_size), C(max_size), C(desired_capacity) before this call.
  returned: always
  type: dict
current:
  description: The same after this call (in check mode, what they would be).
  returned: always
  type: dict
launched:
  description: Instances that joined the group while waiting for a raised desired capacity.
  returned: always
  type: list
  elements: str
removed:
  description: Instances terminated through the group.
  returned: always
  type: list
  elements: str
waited_seconds:
  description: Seconds spent waiting.
  returned: always
  type: float
"""

import time

from ansible_collections.ec2fleet.fleet.plugins.module_utils.aws import AwsCalls
from ansible_collections.ec2fleet.fleet.plugins.module_utils.deploy import (
    HEALTHY,
    IN_SERVICE,
    DeployError,
    argument_spec,
    describe_asg,
    run_module,
    summarize,
    targets_by_instance,
    tg_name,
)

SIZE_KEYS = (("min_size", "MinSize"), ("max_size", "MaxSize"), ("desired_capacity", "DesiredCapacity"))


def sizes(group):
    return {key: group[api] for key, api in SIZE_KEYS}


def planned_sizes(before, params):
    after = dict(before)
    for key, _api in SIZE_KEYS:
        if params[key] is not None:
            after[key] = params[key]
    if not after["min_size"] <= after["desired_capacity"] <= after["max_size"]:
        raise DeployError(
            f"{params['name']}: sizes must keep MinSize <= DesiredCapacity <= MaxSize, asked for "
            f"min {after['min_size']}, desired {after['desired_capacity']}, max {after['max_size']}"
        )
    return after


def serving(aws, group):
    """Instance ids InService, Healthy, and healthy in every target group of the group."""
    ready = {i["InstanceId"] for i in group["Instances"]
             if i["LifecycleState"] == IN_SERVICE and i["HealthStatus"] == "Healthy"}
    for arn in group.get("TargetGroupARNs") or []:
        by_instance = targets_by_instance(aws, arn)
        ready = {iid for iid in ready if summarize(by_instance.get(iid, [])) == HEALTHY}
    return ready


def wait_until(check, what, timeout, poll_interval):
    start = time.monotonic()
    while True:
        done, detail = check()
        if done:
            return round(time.monotonic() - start, 1)
        if time.monotonic() - start >= timeout:
            raise DeployError(f"{what} after {timeout}s: {detail}")
        time.sleep(poll_interval)


def run(module):
    params = module.params
    aws = AwsCalls(params)
    name = params["name"]
    group = describe_asg(aws, name)
    before = sizes(group)
    members = {i["InstanceId"] for i in group["Instances"]}
    to_remove = [iid for iid in params["remove_instances"] if iid in members]
    after = planned_sizes({**before, "desired_capacity": before["desired_capacity"] - len(to_remove)}, params)
    update = {api: after[key] for key, api in SIZE_KEYS
              if after[key] != before[key] - (len(to_remove) if key == "desired_capacity" else 0)}
    changed = bool(to_remove or update)
    result = dict(changed=changed, previous=before, current=after, launched=[], removed=to_remove, waited_seconds=0.0)
    if module.check_mode or not changed:
        return result

    waited = 0.0
    for iid in to_remove:
        aws.call("autoscaling", "terminate_instance_in_auto_scaling_group", f"remove {iid} from {name}",
                 InstanceId=iid, ShouldDecrementDesiredCapacity=True)
    if to_remove and params["wait"]:
        def removed():
            left = {i["InstanceId"] for i in describe_asg(aws, name)["Instances"]} & set(to_remove)
            return not left, f"still in the group: {', '.join(sorted(left))}"
        waited += wait_until(removed, f"{name}: removed instances did not leave the group", params["timeout"],
                             params["poll_interval"])
    if update:
        aws.call("autoscaling", "update_auto_scaling_group", f"update the sizes of {name}",
                 AutoScalingGroupName=name, **update)
    if params["wait"] and after["desired_capacity"] > before["desired_capacity"] - len(to_remove):
        def ready():
            current = describe_asg(aws, name)
            ok = serving(aws, current)
            detail = ", ".join(f"{i['InstanceId']} {i['LifecycleState']}/{i['HealthStatus']}"
                               for i in current["Instances"] if i["InstanceId"] not in ok)
            tgs = ", ".join(tg_name(a) for a in current.get("TargetGroupARNs") or [])
            result["launched"] = sorted({i["InstanceId"] for i in current["Instances"]} - members)
            return len(ok) >= after["desired_capacity"], f"{len(ok)} of {after['desired_capacity']} serving" + (
                f" (healthy in {tgs})" if tgs else "") + (f"; not yet: {detail}" if detail else "")
        waited += wait_until(ready, f"{name}: desired capacity {after['desired_capacity']} not serving",
                             params["timeout"], params["poll_interval"])
    result["waited_seconds"] = waited
    return result


ARGUMENT_SPEC = argument_spec(
    name={"type": "str", "required": True, "aliases": ["asg_name"]},
    min_size={"type": "int"},
    max_size={"type": "int"},
    desired_capacity={"type": "int"},
    remove_instances={"type": "list", "elements": "str", "default": []},
    wait={"type": "bool", "default": True},
    timeout={"type": "int", "default": 900},
    poll_interval={"type": "float", "default": 5},
)


def main():
    run_module(run, ARGUMENT_SPEC)


if __name__ == "__main__":
    main()

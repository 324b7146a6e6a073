#!/usr/bin/python
"""Ansible module: move an ASG instance into Standby (waiting for the drain) or back InService
(waiting until healthy in every target group)."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: asg_standby
short_description: Put an Auto Scaling instance in Standby with a drain wait, or back in service
description:
  - O(state=standby) calls C(EnterStandby) (by default decrementing the desired capacity, so the
    group does not launch a replacement), waits until the lifecycle state is C(Standby), then
    waits until the instance is neither registered nor C(draining) in B(any) target group of its
    Auto Scaling group. On AWS, an instance entering Standby is deregistered from the group's
    target groups and each of them drains it for its C(deregistration_delay.timeout_seconds);
    the module reports the waited time and each target group's delay.
  - O(state=inservice) calls C(ExitStandby) (the group's desired capacity goes up by one), waits
    until the lifecycle state is C(InService), then until the instance is C(healthy) in every
    target group of its group. On timeout it fails naming each target group's state and reason.
  - Idempotent. An instance already in Standby (or InService) is not touched, but the waits still
    run, so a re-run after an interruption still ends drained (or healthy).
  - Classic Load Balancers and other traffic sources attached to the group are not waited on
    (the project uses target groups only).
  - Runs on the controller (delegate the task to C(localhost)); supports check mode (reports what
    would change, calls nothing that changes, does not wait).
version_added: "0.1.0"
author: ec2-fleet project (!UNKNOWN)
extends_documentation_fragment:
  - ec2fleet.fleet.aws
  - ec2fleet.fleet.aws.retries
options:
  instance_id:
    description: The EC2 instance ID.
    type: str
    required: true
  asg_name:
    description:
      - The instance's Auto Scaling group. Found from the instance when omitted; when given, the
        module fails if the instance belongs to another group.
    type: str
  state:
    description: V(standby) or V(inservice).
    type: str
    choices: [standby, inservice]
    default: standby
  should_decrement_desired_capacity:
    description:
      - With V(true) the group's desired capacity goes down by one on entering Standby, so the
        group does not launch a replacement (it then cannot go below the group's minimum size).
    type: bool
    default: true
  wait:
    description: Wait for the lifecycle state and the target groups (drained, or healthy).
    type: bool
    default: true
  timeout:
    description:
      - Seconds to wait for the lifecycle state and then again for the target groups.
      - Default for V(standby) is the longest deregistration delay of the group's target groups
        plus 120; for V(inservice), 600.
    type: int
  poll_interval:
    description: Seconds between two polls.
    type: float
    default: 5
  lifecycle_hooks:
    description:
      - What to do with the group's launch lifecycle hooks (C(autoscaling:EC2_INSTANCE_LAUNCHING)),
        which C(ExitStandby) runs (the instance waits in C(Pending:Wait)).
      - V(complete) completes them with C(CONTINUE) (the instance served before Standby, and the
        health wait in every target group follows); V(heartbeat) leaves them to their owner and
        records a heartbeat every minute while waiting, so they do not time out.
    type: str
    choices: [complete, heartbeat]
    default: complete
notes:
  - The AWS API emulator used in the tests (moto) does not deregister Standby instances from
    target groups; the local fleet's controller stands in for that behaviour there.
"""

EXAMPLES = r"""
- name: Take the host out of service and wait for its connections to drain
  ec2fleet.fleet.asg_standby:
    instance_id: "{{ instance_id }}"
    asg_name: "{{ asg_name }}"
    state: standby
  delegate_to: localhost

- name: Put it back and wait until every target group sees it healthy
  ec2fleet.fleet.asg_standby:
    instance_id: "{{ instance_id }}"
    state: inservice
    timeout: 300
  delegate_to: localhost
"""

RETURN = r"""
asg_name:
  description: The instance's Auto Scaling group.
  returned: always
  type: str
  sample: web
lifecycle_hooks:
  description: Launch lifecycle hooks completed (or heartbeated) while returning to service.
  returned: when O(state=inservice) and waited
  type: list
  elements: str
lifecycle_state:
  description: The lifecycle state at the end (in check mode, before).
  returned: always
  type: str
  sample: Standby
previous_lifecycle_state:
  description: The lifecycle state before this call.
  returned: always
  type: str
  sample: InService
target_groups:
  description: ARNs of the group's target groups.
  returned: always
  type: list
  elements: str
deregistration_delays:
  description: Each target group's deregistration delay in seconds, by ARN.
  returned: always
  type: dict
  sample: {"arn:aws:elasticloadbalancing:eu-west-1:123456789012:targetgroup/web/0123456789abcdef": 30}
target_states:
  description: The instance's entries per target group ARN at the end (empty list, not registered).
  returned: always
  type: dict
  sample: {"arn:aws:elasticloadbalancing:eu-west-1:123456789012:targetgroup/web/0123456789abcdef":
           [{port: 80, state: healthy, reason: "", description: ""}]}
lifecycle_wait_seconds:
  description: Seconds spent waiting for the lifecycle state.
  returned: always
  type: float
  sample: 1.2
target_wait_seconds:
  description: Seconds spent waiting for the target groups (drain, or health).
  returned: always
  type: float
  sample: 31.0
desired_capacity:
  description: The group's desired capacity at the end.
  returned: always
  type: int
  sample: 7
"""

from ansible_collections.ec2fleet.fleet.plugins.module_utils.aws import AwsCalls
from ansible_collections.ec2fleet.fleet.plugins.module_utils.deploy import (
    IN_SERVICE,
    STANDBY,
    DeployError,
    argument_spec,
    asg_instance,
    deregistration_delay,
    describe_asg,
    require_ec2_instance,
    run_module,
    target_states,
)
from ansible_collections.ec2fleet.fleet.plugins.module_utils.service import (
    DEFAULT_INSERVICE_TIMEOUT,
    IN,
    OUT,
    LaunchHooks,
    capacity_refusal,
    drain_timeout,
    standby_step,
    wait_one,
)

# LaunchHooks (ExitStandby's launch lifecycle hooks) lives in module_utils/service.py now, and stays
# importable from here.
__all__ = ["ARGUMENT_SPEC", "LaunchHooks", "main", "run"]


def locate(aws, instance_id, asg_name):
    """The instance's Auto Scaling record, checked against the expected group."""
    record = asg_instance(aws, instance_id)
    if record is None:
        require_ec2_instance(aws, instance_id)  # "not found" beats "not in a group" when it is both
        raise DeployError(f"{instance_id} is not in any Auto Scaling group ({aws.where})")
    if asg_name and record["AutoScalingGroupName"] != asg_name:
        raise DeployError(f"{instance_id} belongs to Auto Scaling group {record['AutoScalingGroupName']!r}, "
                          f"not {asg_name!r}")
    return record


def waited(result, outcome, lifecycle_state):
    """The wait's outcome (service.wait_one) into the module's result."""
    result.update(lifecycle_state=lifecycle_state, target_states=outcome["target_states"],
                  lifecycle_wait_seconds=outcome["lifecycle_wait_seconds"],
                  target_wait_seconds=outcome["target_wait_seconds"])
    return outcome["target_wait_seconds"], outcome["target_states"]


def enter_standby(module, aws, group, record, result):
    params = module.params
    instance_id, name = params["instance_id"], group["AutoScalingGroupName"]
    changed = standby_step(instance_id, record["LifecycleState"], OUT) == "call"
    if changed:
        decrement = params["should_decrement_desired_capacity"]
        refusal = capacity_refusal(group, [instance_id], OUT, decrement)
        if refusal:
            raise DeployError(refusal)
        if module.check_mode:
            return dict(result, changed=True, msg=f"would put {instance_id} in Standby in {name}")
        aws.call("autoscaling", "enter_standby", f"put {instance_id} in Standby",
                 AutoScalingGroupName=name, InstanceIds=[instance_id], ShouldDecrementDesiredCapacity=decrement)
    verb = "entered" if changed else "already in"
    if module.check_mode or not params["wait"]:
        return dict(result, changed=changed, msg=f"{instance_id} {verb} Standby in {name} (not waited)")
    timeout = params["timeout"] or drain_timeout(result["deregistration_delays"])
    outcome = wait_one(aws, instance_id, name, result["target_groups"], OUT, timeout, params["poll_interval"])
    seconds, states = waited(result, outcome, STANDBY)
    return dict(result, changed=changed,
                msg=f"{instance_id} {verb} Standby in {name}; deregistered from {len(states)} target group(s) "
                    f"after {seconds}s")


def exit_standby(module, aws, group, record, result):
    params = module.params
    instance_id, name = params["instance_id"], group["AutoScalingGroupName"]
    changed = standby_step(instance_id, record["LifecycleState"], IN) == "call"
    if changed:
        refusal = capacity_refusal(group, [instance_id], IN)
        if refusal:
            raise DeployError(refusal)
        if module.check_mode:
            return dict(result, changed=True, msg=f"would move {instance_id} out of Standby in {name}")
        aws.call("autoscaling", "exit_standby", f"move {instance_id} out of Standby",
                 AutoScalingGroupName=name, InstanceIds=[instance_id])
    verb = "left" if changed else "already out of"
    if module.check_mode or not params["wait"]:
        return dict(result, changed=changed, msg=f"{instance_id} {verb} Standby in {name} (not waited)")
    timeout = params["timeout"] or DEFAULT_INSERVICE_TIMEOUT
    outcome = wait_one(aws, instance_id, name, result["target_groups"], IN, timeout, params["poll_interval"],
                       params["lifecycle_hooks"])
    result["lifecycle_hooks"] = outcome["lifecycle_hooks"]
    seconds, states = waited(result, outcome, IN_SERVICE)
    return dict(result, changed=changed,
                msg=f"{instance_id} {verb} Standby in {name}; healthy in {len(states)} target group(s) after {seconds}s")


def run(module):
    params = module.params
    aws = AwsCalls(params)
    record = locate(aws, params["instance_id"], params["asg_name"])
    group = describe_asg(aws, record["AutoScalingGroupName"])
    arns = sorted(group.get("TargetGroupARNs", []))
    result = dict(
        asg_name=group["AutoScalingGroupName"],
        previous_lifecycle_state=record["LifecycleState"],
        lifecycle_state=record["LifecycleState"],
        target_groups=arns,
        deregistration_delays={arn: deregistration_delay(aws, arn) for arn in arns},
        target_states={},
        lifecycle_wait_seconds=0.0,
        target_wait_seconds=0.0,
    )
    if params["state"] == "standby":
        result = enter_standby(module, aws, group, record, result)
    else:
        result = exit_standby(module, aws, group, record, result)
    if not module.check_mode:
        result["desired_capacity"] = describe_asg(aws, group["AutoScalingGroupName"])["DesiredCapacity"]
        current = asg_instance(aws, params["instance_id"])
        result["lifecycle_state"] = current["LifecycleState"] if current else "detached"
    else:
        result["desired_capacity"] = group["DesiredCapacity"]
    if not result["target_states"]:
        result["target_states"] = {arn: target_states(aws, arn, params["instance_id"]) for arn in arns}
    return result


ARGUMENT_SPEC = argument_spec(
    instance_id={"type": "str", "required": True},
    asg_name={"type": "str"},
    state={"type": "str", "choices": ["standby", "inservice"], "default": "standby"},
    should_decrement_desired_capacity={"type": "bool", "default": True},
    wait={"type": "bool", "default": True},
    timeout={"type": "int"},
    poll_interval={"type": "float", "default": 5},
    lifecycle_hooks={"type": "str", "choices": ["complete", "heartbeat"], "default": "complete"},
)


def main():
    run_module(run, ARGUMENT_SPEC)


if __name__ == "__main__":
    main()

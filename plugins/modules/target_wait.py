#!/usr/bin/python
"""Ansible module: wait for an instance's target health (healthy, or gone), and register or
deregister instances that are not in an Auto Scaling group."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: target_wait
short_description: Wait until an instance is healthy in (or gone from) its target groups; register or deregister it
description:
  - O(state=healthy) waits until the instance is C(healthy) on every port it is registered on, in
    every target group considered. O(state=absent) waits until it is no longer registered at all,
    through C(draining) (which lasts the target group's C(deregistration_delay.timeout_seconds)).
  - O(state=registered) registers the instance (on O(port), else the target group's port) where it
    is not yet registered, then waits until healthy. O(state=deregistered) deregisters it, then
    waits until it is gone. These are for instances outside an Auto Scaling group; for group
    members use M(ec2fleet.fleet.asg_standby), which lets the group deregister them.
  - "Which target groups: O(target_groups) (names or ARNs) when given; else those of O(asg_name);
    else, for an instance in an Auto Scaling group, its group's target groups; else every target
    group of the region where the instance is registered now (O(state=registered) needs
    O(target_groups))."
  - Returns each target group's entries for the instance and the seconds waited. On timeout it
    fails naming each target group's state and reason.
  - Runs on the controller (delegate the task to C(localhost)); supports check mode (reports what
    would change, changes nothing, does not wait).
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
  state:
    description: V(healthy), V(absent), V(registered) or V(deregistered).
    type: str
    choices: [healthy, absent, registered, deregistered]
    default: healthy
  target_groups:
    description: Target group names or ARNs.
    type: list
    elements: str
    aliases: [target_group_arns]
  asg_name:
    description: Use this Auto Scaling group's target groups (when O(target_groups) is not given).
    type: str
  port:
    description:
      - Port to register or deregister. Default for V(registered), the target group's port; for
        V(deregistered), every port the instance is registered on.
    type: int
  wait:
    description: After registering, wait until healthy; after deregistering, wait until gone.
    type: bool
    default: true
  timeout:
    description:
      - Seconds to wait. Default for V(healthy) and V(registered), 300; for V(absent) and
        V(deregistered), the longest deregistration delay of the target groups plus 120.
    type: int
  poll_interval:
    description: Seconds between two polls.
    type: float
    default: 5
notes:
  - The AWS API emulator used in the tests (moto) reports targets healthy at once and removes
    deregistered targets at once (no draining).
"""

EXAMPLES = r"""
- name: Wait until the host is healthy in every target group of its ASG
  ec2fleet.fleet.target_wait:
    instance_id: "{{ instance_id }}"
    timeout: 300
  delegate_to: localhost

- name: Take a host that is not in an ASG out of the load balancer, waiting for the drain
  ec2fleet.fleet.target_wait:
    instance_id: "{{ instance_id }}"
    state: deregistered
    target_groups: [web]
  delegate_to: localhost

- name: Put it back on port 8080 and wait until healthy
  ec2fleet.fleet.target_wait:
    instance_id: "{{ instance_id }}"
    state: registered
    target_groups: [web]
    port: 8080
  delegate_to: localhost
"""

RETURN = r"""
target_groups:
  description: ARNs of the target groups considered.
  returned: always
  type: list
  elements: str
target_states:
  description: The instance's entries per target group ARN at the end (empty list, not registered).
  returned: always
  type: dict
  sample: {"arn:aws:elasticloadbalancing:eu-west-1:123456789012:targetgroup/web/0123456789abcdef":
           [{port: 80, state: healthy, reason: "", description: ""}]}
deregistration_delays:
  description: Each target group's deregistration delay in seconds, by ARN.
  returned: always
  type: dict
registered_now:
  description: ARNs of the target groups this call registered the instance in.
  returned: always
  type: list
  elements: str
deregistered_now:
  description: ARNs of the target groups this call deregistered the instance from.
  returned: always
  type: list
  elements: str
waited_seconds:
  description: Seconds spent waiting.
  returned: always
  type: float
  sample: 12.5
"""

from ansible_collections.ec2fleet.fleet.plugins.module_utils.aws import AwsCalls
from ansible_collections.ec2fleet.fleet.plugins.module_utils.deploy import (
    HEALTHY,
    NOT_REGISTERED,
    DeployError,
    argument_spec,
    asg_instance,
    deregistration_delay,
    describe_asg,
    require_ec2_instance,
    resolve_target_groups,
    run_module,
    target_states,
    tg_name,
)
from ansible_collections.ec2fleet.fleet.plugins.module_utils.service import (
    IN,
    OUT,
    drain_timeout,
    registered_on,
    target_groups,
    target_type_error,
    to_deregister,
    wait_one,
)

DEFAULT_HEALTH_TIMEOUT = 300


def choose_target_groups(aws, params):
    """The target group ARNs to act on, following the documented order."""
    if params["target_groups"]:
        return resolve_target_groups(aws, params["target_groups"])
    if params["asg_name"]:
        return sorted(describe_asg(aws, params["asg_name"]).get("TargetGroupARNs", []))
    if params["state"] == "registered":
        raise DeployError("state=registered needs target_groups (where to register the instance)")
    record = asg_instance(aws, params["instance_id"])
    if record is not None:
        return sorted(describe_asg(aws, record["AutoScalingGroupName"]).get("TargetGroupARNs", []))
    groups = aws.paginate("elbv2", "describe_target_groups", "TargetGroups", "list target groups")
    return sorted(g["TargetGroupArn"] for g in groups if target_states(aws, g["TargetGroupArn"], params["instance_id"]))


def register(module, aws, arns, result):
    params = module.params
    instance_id = params["instance_id"]
    details = target_groups(aws, arns) if arns else {}
    for arn in arns:
        group = details[arn]
        error = target_type_error(arn, group)
        if error:
            raise DeployError(error)
        port = params["port"] or group["Port"]
        if registered_on(target_states(aws, arn, instance_id), port):
            continue
        result["registered_now"].append(arn)
        if not module.check_mode:
            aws.call("elbv2", "register_targets", f"register {instance_id} in {tg_name(arn)}",
                     TargetGroupArn=arn, Targets=[{"Id": instance_id, "Port": port}])


def deregister(module, aws, arns, result):
    params = module.params
    instance_id = params["instance_id"]
    for arn in arns:
        entries = to_deregister(target_states(aws, arn, instance_id), params["port"])
        if not entries:
            continue
        result["deregistered_now"].append(arn)
        if not module.check_mode:
            aws.call("elbv2", "deregister_targets", f"deregister {instance_id} from {tg_name(arn)}",
                     TargetGroupArn=arn, Targets=[{"Id": instance_id, "Port": e["port"]} for e in entries])


def run(module):
    params = module.params
    aws = AwsCalls(params)
    instance_id, state = params["instance_id"], params["state"]
    if state in ("healthy", "registered"):
        require_ec2_instance(aws, instance_id)
    arns = choose_target_groups(aws, params)
    result = dict(target_groups=arns, target_states={}, registered_now=[], deregistered_now=[], waited_seconds=0.0,
                  deregistration_delays={arn: deregistration_delay(aws, arn) for arn in arns})
    if not arns and state in ("healthy", "registered"):
        raise DeployError(f"no target group to wait on for {instance_id} (it is in none, and none was given)")
    if state == "registered":
        register(module, aws, arns, result)
    elif state == "deregistered":
        deregister(module, aws, arns, result)
    changed = bool(result["registered_now"] or result["deregistered_now"])
    want = HEALTHY if state in ("healthy", "registered") else NOT_REGISTERED
    goal = "healthy" if want == HEALTHY else "deregistered"
    if module.check_mode or (state in ("registered", "deregistered") and not params["wait"]):
        result["target_states"] = {arn: target_states(aws, arn, instance_id) for arn in arns}
        prefix = "would change" if module.check_mode and changed else "changed" if changed else "no change"
        return dict(result, changed=changed, msg=f"{instance_id}: {prefix} in {len(arns)} target group(s) (not waited)")
    timeout = params["timeout"]
    if timeout is None:
        timeout = drain_timeout(result["deregistration_delays"]) if want == NOT_REGISTERED else DEFAULT_HEALTH_TIMEOUT
    # An instance outside any group as far as the wait goes: its target groups only.
    outcome = wait_one(aws, instance_id, None, arns, IN if want == HEALTHY else OUT, timeout, params["poll_interval"])
    waited, states = outcome["target_wait_seconds"], outcome["target_states"]
    result.update(waited_seconds=waited, target_states=states)
    return dict(result, changed=changed, msg=f"{instance_id} {goal} in {len(arns)} target group(s) after {waited}s")


ARGUMENT_SPEC = argument_spec(
    instance_id={"type": "str", "required": True},
    state={"type": "str", "choices": ["healthy", "absent", "registered", "deregistered"], "default": "healthy"},
    target_groups={"type": "list", "elements": "str", "aliases": ["target_group_arns"]},
    asg_name={"type": "str"},
    port={"type": "int"},
    wait={"type": "bool", "default": True},
    timeout={"type": "int"},
    poll_interval={"type": "float", "default": 5},
)


def main():
    run_module(run, ARGUMENT_SPEC)


if __name__ == "__main__":
    main()

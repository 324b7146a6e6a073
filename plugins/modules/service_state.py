#!/usr/bin/python
"""Ansible module: take a batch of instances out of service (Standby, or deregistered) and wait
for the drain, or put them back and wait until healthy, in one call with one target health read
per target group per poll."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: service_state
short_description: Take a batch of instances out of service and wait for the drain, or put them back and wait until healthy
description:
  - One call for a whole batch of a rolling deploy. Instances of an Auto Scaling group go to
    C(Standby) (O(state=out)) or back C(InService) (O(state=in)), grouped by group, in calls of
    at most 20 instances (the API's limit); instances outside any group are deregistered from (or
    registered in) their C(target_group_arns), one call per target group for all of
    them. Then the module waits, reading each involved target group's health once per poll
    whatever the batch size, and the lifecycle states 50 instances per call.
  - O(state=out) waits until each group member is in C(Standby), then until every instance is
    neither registered nor C(draining) in B(any) target group of its group (or of its list). On
    AWS, an instance entering Standby is deregistered from its group's target groups and drains for
    the target group's C(deregistration_delay.timeout_seconds).
  - O(state=in) waits until each group member is C(InService) (completing or heartbeating the
    group's launch lifecycle hooks, which C(ExitStandby) runs, see O(lifecycle_hooks)), then until
    every instance is C(healthy) on every port in every target group of its group (or list).
  - "Per instance, not all or nothing: a problem with one instance (a lifecycle state it cannot
    leave from, its group at its minimum or maximum size, a failed call for its group or target
    group, a timeout, the instance terminated or detached while waiting) is reported in its entry
    of RV(instances) and RV(failed_instances), and the module does not fail; the others go on.
    An instance that failed is left out of the later steps and waits. The module fails only for
    invalid parameters and for errors that concern the whole call (credentials, region, endpoint)."
  - Before calling, each group's capacity is checked for the instances it would move, as AWS
    would check it (desired capacity minus them not below C(MinSize) with
    O(should_decrement_desired_capacity); plus them not above C(MaxSize) for C(ExitStandby));
    when it does not hold, that group's instances fail with one line naming the group, its desired
    capacity, the count and the limit.
  - Idempotent. Instances already in C(Standby) or C(EnteringStandby) (or C(InService) and on their
    way there) are not called again, registered targets are not registered again, draining ones not
    deregistered again, but the waits still run, so a re-run after an interruption still ends
    drained (or healthy).
  - Runs on the controller (delegate the task to C(localhost), C(run_once)); supports check mode
    (reports what would change, calls nothing that changes, does not wait).
version_added: "0.1.0"
author: ec2-fleet project (!UNKNOWN)
extends_documentation_fragment:
  - ec2fleet.fleet.aws
  - ec2fleet.fleet.aws.retries
options:
  instances:
    description:
      - The batch. Each entry is a dict with C(instance_id) (required, the EC2 instance ID),
        C(asg_name) (its Auto Scaling group; null or empty for an instance outside any group) and
        C(target_group_arns) (a list of target group ARNs, used only when C(asg_name) is null,
        where an instance outside any group is deregistered and registered, none for one behind
        no load balancer; a group member's target groups are its group's).
      - Each entry is checked before anything is called (known keys, an instance ID, no instance
        twice, target group ARNs); the first bad entry fails the module with one line naming it.
      - An instance given with C(asg_name) must be in that group; one given without must not be in
        any group.
    type: list
    elements: dict
    required: true
  state:
    description: V(out) (out of service, drained) or V(in) (back in service, healthy).
    type: str
    choices: [out, in]
    required: true
  timeout:
    description:
      - Seconds each instance may wait for its lifecycle state, and then again for its target
        groups.
      - Default for V(out), the longest deregistration delay of the involved target groups plus
        120; for V(in), 600.
    type: int
  poll_interval:
    description: Seconds between two polls.
    type: float
    default: 5
  lifecycle_hooks:
    description:
      - What to do with the groups' launch lifecycle hooks (C(autoscaling:EC2_INSTANCE_LAUNCHING)),
        which C(ExitStandby) runs (the instance waits in C(Pending:Wait)). As in
        M(ec2fleet.fleet.asg_standby).
      - V(complete) completes them with C(CONTINUE) for each instance (it served before Standby,
        and the health wait in every target group follows); V(heartbeat) leaves them to their
        owner and records a heartbeat every minute per instance while waiting, so they do not time
        out.
    type: str
    choices: [complete, heartbeat]
    default: complete
  should_decrement_desired_capacity:
    description:
      - With V(true) each group's desired capacity goes down by the number of its instances
        entering Standby, so the group launches no replacements (it then cannot go below the
        group's minimum size).
    type: bool
    default: true
notes:
  - The AWS API emulator used in the tests (moto) does not deregister Standby instances from
    target groups (nor register them again on their return); the tests stand in for AWS there,
    openly (C(StandbyStandIn) in C(tests/deploy_support.py)). It also puts instances in C(Standby)
    and back C(InService) at once and removes deregistered targets without draining.
  - "API calls for a batch of N instances: per group with n instances to move, ceil(n/20)
    C(EnterStandby) (or C(ExitStandby)); one C(DeregisterTargets) (or C(RegisterTargets)) per
    target group with instances outside any group to change; per poll, ceil(N/50)
    C(DescribeAutoScalingInstances) while group members wait, and one C(DescribeTargetHealth) per
    target group with instances waiting on it; in a poll where group members reach the goal, one
    more C(DescribeAutoScalingInstances) per 50 of them, read after their target groups, so an
    instance terminated between the two reads is not taken for drained. RV(api_calls) counts them."
seealso:
  - module: ec2fleet.fleet.asg_standby
  - module: ec2fleet.fleet.target_wait
"""

EXAMPLES = r"""
- name: Take the batch out of service and wait for the drain
  ec2fleet.fleet.service_state:
    instances:
      - instance_id: i-0123456789abcdef0
        asg_name: web
      - instance_id: i-0123456789abcdef1
        asg_name: web
      - instance_id: i-0fedcba9876543210
        asg_name: null
        target_group_arns:
          - arn:aws:elasticloadbalancing:eu-west-1:123456789012:targetgroup/web/0123456789abcdef
    state: out
  delegate_to: localhost
  run_once: true
  register: out_of_service

- name: Deploy to the hosts that are out of service only
  ansible.builtin.debug:
    msg: "{{ out_of_service.ok_instances }}"
  run_once: true

- name: Put them back and wait until every target group sees them healthy
  ec2fleet.fleet.service_state:
    instances: "{{ batch_instances }}"
    state: in
    timeout: 300
  delegate_to: localhost
  run_once: true
"""

RETURN = r"""
instances:
  description:
    - Each instance's outcome, by instance ID.
    - C(ok) and C(error) (one line; empty when ok); C(asg_name) (null outside any group);
      C(previous_lifecycle_state) and C(lifecycle_state) (before this call, and at the end; null
      outside any group, C(detached) once gone from its group); C(target_groups) (ARNs, its
      group's or its list); C(target_states) (its entries per target group ARN at the end, in
      check mode before; an empty list, not registered); C(lifecycle_wait_seconds) and
      C(target_wait_seconds); C(lifecycle_hooks) (launch hooks completed or heartbeated).
  returned: always
  type: dict
  sample:
    i-0123456789abcdef0:
      ok: true
      error: ""
      asg_name: web
      previous_lifecycle_state: InService
      lifecycle_state: Standby
      target_groups: ["arn:aws:elasticloadbalancing:eu-west-1:123456789012:targetgroup/web/0123456789abcdef"]
      target_states: {"arn:aws:elasticloadbalancing:eu-west-1:123456789012:targetgroup/web/0123456789abcdef": []}
      lifecycle_wait_seconds: 0.4
      target_wait_seconds: 31.2
      lifecycle_hooks: []
failed_instances:
  description: IDs of the instances that failed, sorted.
  returned: always
  type: list
  elements: str
ok_instances:
  description: IDs of the instances that are where O(state) wants them, sorted.
  returned: always
  type: list
  elements: str
waited_seconds:
  description: Seconds the batch waited in all (0 in check mode).
  returned: always
  type: float
  sample: 32.0
polls:
  description:
    - How many times the wait read the instances' states. A poll reads DescribeAutoScalingInstances
      once per 50 instances still waiting and DescribeTargetHealth once per target group, and once
      more DescribeAutoScalingInstances for the instances that reached the goal in that poll.
  returned: always
  type: int
  sample: 7
api_calls:
  description: AWS API operations this call made, by operation name (a retried call counts once).
  returned: always
  type: dict
  sample: {"DescribeAutoScalingInstances": 8, "DescribeAutoScalingGroups": 1, "EnterStandby": 2,
           "DescribeTargetGroupAttributes": 1, "DescribeTargetHealth": 7}
msg:
  description: One line summing up the call.
  returned: always
  type: str
  sample: "24 of 25 instance(s) out of service (25 put in Standby, 0 deregistered from their target groups;
           waited 31.5s); 1 failed: i-0123456789abcdef0"
"""

from ansible_collections.ec2fleet.fleet.plugins.module_utils.aws import AwsCalls
from ansible_collections.ec2fleet.fleet.plugins.module_utils.deploy import DeployError, argument_spec, run_module
from ansible_collections.ec2fleet.fleet.plugins.module_utils.service import move_batch, parse_instances


def run(module):
    params = module.params
    members = parse_instances(params["instances"])
    if params["timeout"] is not None and params["timeout"] < 0:
        raise DeployError(f"timeout must be 0 or more seconds, got {params['timeout']}")
    if params["poll_interval"] <= 0:
        raise DeployError(f"poll_interval must be more than 0 seconds, got {params['poll_interval']}")
    aws = AwsCalls(params)
    result = move_batch(aws, members, params["state"], check_mode=module.check_mode,
                        decrement=params["should_decrement_desired_capacity"], timeout=params["timeout"],
                        poll_interval=params["poll_interval"], lifecycle_hooks=params["lifecycle_hooks"])
    result["api_calls"] = aws.sorted_api_calls()
    return result


ARGUMENT_SPEC = argument_spec(
    instances={"type": "list", "elements": "dict", "required": True},
    state={"type": "str", "choices": ["out", "in"], "required": True},
    timeout={"type": "int"},
    poll_interval={"type": "float", "default": 5},
    lifecycle_hooks={"type": "str", "choices": ["complete", "heartbeat"], "default": "complete"},
    should_decrement_desired_capacity={"type": "bool", "default": True},
)


def main():
    run_module(run, ARGUMENT_SPEC)


if __name__ == "__main__":
    main()

#!/usr/bin/python
"""Ansible module: suspend or resume Auto Scaling processes, remembering what was suspended before."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: asg_processes
short_description: Suspend or resume Auto Scaling processes around a deployment
description:
  - With O(state=suspended), suspends O(processes) on an Auto Scaling group and reports what was
    already suspended before (RV(previously_suspended)) and what this call suspended
    (RV(suspended_now)), so the deploy can later resume exactly what it suspended and nothing
    that an operator had suspended on purpose.
  - With O(state=resumed), resumes exactly O(processes) (those of them that are suspended).
  - An empty O(processes) list changes nothing (the AWS API would act on B(every) process when
    given an empty list; this module never sends one).
  - Runs on the controller (delegate the task to C(localhost)); supports check mode.
version_added: "0.1.0"
author: ec2-fleet project (!UNKNOWN)
extends_documentation_fragment:
  - ec2fleet.fleet.aws
  - ec2fleet.fleet.aws.retries
options:
  name:
    description: Name of the Auto Scaling group.
    type: str
    required: true
    aliases: [asg_name]
  state:
    description: V(suspended) suspends O(processes); V(resumed) resumes them.
    type: str
    choices: [suspended, resumed]
    default: suspended
  processes:
    description:
      - Scaling processes to suspend or resume.
      - The default is what a rolling deploy must stop, so the group neither replaces instances
        that are briefly unhealthy or in Standby nor moves capacity between AZs mid-deploy.
    type: list
    elements: str
    choices: [Launch, Terminate, AddToLoadBalancer, AlarmNotification, AZRebalance, HealthCheck,
              InstanceRefresh, ReplaceUnhealthy, ScheduledActions]
    default: [AZRebalance, ReplaceUnhealthy, AlarmNotification, ScheduledActions]
"""

EXAMPLES = r"""
- name: Suspend the processes a rolling deploy must stop
  ec2fleet.fleet.asg_processes:
    name: web
    state: suspended
  delegate_to: localhost
  register: web_processes

- name: Resume exactly what this deploy suspended
  ec2fleet.fleet.asg_processes:
    name: web
    state: resumed
    processes: "{{ web_processes.suspended_now }}"
  delegate_to: localhost
"""

RETURN = r"""
previously_suspended:
  description: Every process suspended on the group before this call (sorted).
  returned: always
  type: list
  elements: str
  sample: [ScheduledActions]
suspended_now:
  description: Processes this call suspended (O(state=suspended); in check mode, would suspend).
  returned: always
  type: list
  elements: str
  sample: [AZRebalance, AlarmNotification, ReplaceUnhealthy]
resumed_now:
  description: Processes this call resumed (O(state=resumed); in check mode, would resume).
  returned: always
  type: list
  elements: str
  sample: []
suspended:
  description: Every process suspended on the group after this call (in check mode, would be).
  returned: always
  type: list
  elements: str
  sample: [AZRebalance, AlarmNotification, ReplaceUnhealthy, ScheduledActions]
"""

from ansible_collections.ec2fleet.fleet.plugins.module_utils.aws import AwsCalls
from ansible_collections.ec2fleet.fleet.plugins.module_utils.deploy import (
    argument_spec,
    describe_asg,
    run_module,
)

ALL_PROCESSES = ["Launch", "Terminate", "AddToLoadBalancer", "AlarmNotification", "AZRebalance",
                 "HealthCheck", "InstanceRefresh", "ReplaceUnhealthy", "ScheduledActions"]
DEPLOY_PROCESSES = ["AZRebalance", "ReplaceUnhealthy", "AlarmNotification", "ScheduledActions"]


def plan(before, processes, state):
    """(to_suspend, to_resume, after) for the current suspended set and the request."""
    before, wanted = set(before), set(processes)
    if state == "suspended":
        to_suspend, to_resume = wanted - before, set()
    else:
        to_suspend, to_resume = set(), wanted & before
    return sorted(to_suspend), sorted(to_resume), sorted((before | to_suspend) - to_resume)


def run(module):
    params = module.params
    aws = AwsCalls(params)
    name = params["name"]
    group = describe_asg(aws, name)
    before = sorted(p["ProcessName"] for p in group.get("SuspendedProcesses", []))
    to_suspend, to_resume, after = plan(before, params["processes"], params["state"])
    if not module.check_mode:
        if to_suspend:
            aws.call("autoscaling", "suspend_processes", f"suspend processes on {name}",
                     AutoScalingGroupName=name, ScalingProcesses=to_suspend)
        if to_resume:
            aws.call("autoscaling", "resume_processes", f"resume processes on {name}",
                     AutoScalingGroupName=name, ScalingProcesses=to_resume)
    changed = bool(to_suspend or to_resume)
    verb = "suspended" if to_suspend else "resumed" if to_resume else "unchanged"
    done = ", ".join(to_suspend or to_resume)
    msg = f"{name}: {verb} {done}" if changed else f"{name}: nothing to change"
    if changed and module.check_mode:
        msg = f"{name}: would have {verb} {done}"
    return dict(changed=changed, msg=msg, previously_suspended=before, suspended_now=to_suspend,
                resumed_now=to_resume, suspended=after)


ARGUMENT_SPEC = argument_spec(
    name={"type": "str", "required": True, "aliases": ["asg_name"]},
    state={"type": "str", "choices": ["suspended", "resumed"], "default": "suspended"},
    processes={"type": "list", "elements": "str", "choices": ALL_PROCESSES, "default": DEPLOY_PROCESSES},
)


def main():
    run_module(run, ARGUMENT_SPEC)


if __name__ == "__main__":
    main()

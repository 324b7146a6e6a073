#!/usr/bin/python
"""Ansible module: the states of CloudWatch alarms, read once or watched for a while (a deploy's
alarm gate and bake)."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: alarm_state
short_description: Read the states of CloudWatch alarms, or watch them until one fires
description:
  - Reads the state of the named CloudWatch alarms, metric and composite alike, in as few
    C(DescribeAlarms) calls as the API allows (up to 100 names per call, both alarm types).
  - Reports each alarm's type, state, reason and the time its state last changed; which of them are
    firing (RV(firing)); which names have no alarm (RV(missing)), a failure unless
    O(allow_missing).
  - With O(wait_seconds), the bake of a rolling deploy, it reads them again every O(poll_interval)
    seconds for that long, and returns as soon as one fires, with the time it fired
    (RV(fired_at), from CloudWatch's state change, not from the poll that saw it).
  - It never fails because an alarm fires; the caller decides (stop the rollout, roll back).
    It fails for missing alarms (unless O(allow_missing)), invalid parameters and AWS errors.
  - Read-only; check mode does the same reads.
version_added: "1.0.0"
author: ec2-fleet project (!UNKNOWN)
extends_documentation_fragment:
  - ec2fleet.fleet.aws
  - ec2fleet.fleet.aws.retries
options:
  names:
    description:
      - Alarm names (or alarm ARNs), metric or composite. Each is read once, however often given.
      - An empty list reads nothing and reports no alarm firing.
    type: list
    elements: str
    required: true
    aliases: [alarm_names]
  insufficient_data:
    description:
      - How an alarm in C(INSUFFICIENT_DATA) counts. CloudWatch puts an alarm there when it has
        just been created, or when its metric has no data and it treats missing data as missing
        (a target group that served no request, a log group nothing wrote to).
      - With V(ok) (default) it does not stop anything - an alarm that cannot judge is not taken as
        a failure (new alarms, idle tiers). It is still listed in RV(insufficient).
      - With V(alarm) it counts as firing, for a gate that must see every alarm judge the release.
    type: str
    choices: [ok, alarm]
    default: ok
  allow_missing:
    description:
      - With V(false) (default), a name with no alarm fails the module with one line naming it
        (a typo must not leave a deploy ungated). With V(true), such names are only listed in
        RV(missing).
    type: bool
    default: false
  wait_seconds:
    description:
      - Seconds to watch the alarms; 0 (default) reads them once. The module returns as soon as one
        fires (at once if one is firing already).
    type: float
    default: 0
  poll_interval:
    description:
      - Seconds between two reads while watching. CloudWatch evaluates an alarm once per period
        (60 seconds; 10 or 30 for high-resolution alarms), so reading more often than every 10
        seconds gains little.
    type: float
    default: 10
notes:
  - "API calls: ceil(n/100) C(DescribeAlarms) per read of n names (more only when CloudWatch pages
    an answer); RV(api_calls) counts them. IAM: C(cloudwatch:DescribeAlarms)."
  - The AWS API emulator used in the tests and the local fleet (moto) does not evaluate alarms;
    the local fleet's alarm evaluator stands in for CloudWatch there (docs/local-fleet.md). This
    module only reads states, in both worlds.
seealso:
  - module: ec2fleet.fleet.lb_metrics
"""

EXAMPLES = r"""
- name: Before the first batch, the gate's alarms must not be firing
  ec2fleet.fleet.alarm_state:
    names: "{{ deploy_alarms }}"
  register: gate

- name: Refuse the deploy while an alarm fires
  ansible.builtin.assert:
    that: gate.firing | length == 0
    fail_msg: "{{ gate.msg }}"

- name: Bake, after a batch - watch the alarms for 5 minutes, return as soon as one fires
  ec2fleet.fleet.alarm_state:
    names: ["web-deploy-gate"]
    wait_seconds: 300
    poll_interval: 10
    insufficient_data: alarm
  register: bake
"""

RETURN = r"""
alarms:
  description:
    - Each alarm found, by name - C(type) (V(metric) or V(composite)), C(state) (V(OK), V(ALARM) or
      V(INSUFFICIENT_DATA)), C(reason) (CloudWatch's state reason), C(updated) (when its state last
      changed, ISO 8601) and C(updated_epoch) (the same, in seconds since the epoch), C(arn).
    - In check mode too (reads only).
  returned: always
  type: dict
  sample:
    web-5xx:
      name: web-5xx
      arn: arn:aws:cloudwatch:eu-west-1:123456789012:alarm:web-5xx
      type: metric
      state: ALARM
      reason: "Threshold Crossed: 1 out of the last 1 datapoints [12.0 (02/03/26 10:01:00)] was greater than the threshold (5.0)"
      updated: "2026-03-02T10:02:03.120000+00:00"
      updated_epoch: 1772445723.12
firing:
  description: Names of the alarms that count as firing (C(ALARM), and C(INSUFFICIENT_DATA) with O(insufficient_data=alarm)), in the order given.
  returned: always
  type: list
  elements: str
insufficient:
  description: Names of the alarms in C(INSUFFICIENT_DATA), whichever way they count.
  returned: always
  type: list
  elements: str
missing:
  description: Names with no alarm (only returned non-empty with O(allow_missing)).
  returned: always
  type: list
  elements: str
ok:
  description: True when no alarm is firing and none is missing.
  returned: always
  type: bool
fired_at:
  description: When the first of the firing alarms entered its state (ISO 8601); null when none fires.
  returned: always
  type: str
  sample: "2026-03-02T10:02:03.120000+00:00"
fired_at_epoch:
  description: RV(fired_at) in seconds since the epoch; null when none fires.
  returned: always
  type: float
waited:
  description: Seconds spent watching (0 without O(wait_seconds)).
  returned: always
  type: float
polls:
  description: How many times the alarms were read.
  returned: always
  type: int
api_calls:
  description: AWS API operations this call made, by operation name (a retried call counts once).
  returned: always
  type: dict
  sample: {"DescribeAlarms": 4}
msg:
  description: One line summing up the reading.
  returned: always
  type: str
  sample: "1 alarm(s) firing: web-deploy-gate (web-deploy-gate: ALARM since 2026-03-02T10:02:03+00:00: ...)"
"""

from ansible_collections.ec2fleet.fleet.plugins.module_utils.alarms import message, parse_names, watch
from ansible_collections.ec2fleet.fleet.plugins.module_utils.aws import AwsCalls
from ansible_collections.ec2fleet.fleet.plugins.module_utils.deploy import argument_spec, run_module


def run(module):
    params = module.params
    names = parse_names(params["names"])
    aws = AwsCalls(params)
    reading = watch(aws, names, insufficient_data=params["insufficient_data"],
                    allow_missing=params["allow_missing"], wait_seconds=params["wait_seconds"],
                    poll_interval=params["poll_interval"])
    reading.update(changed=False, api_calls=aws.sorted_api_calls(),
                   msg=message(reading, params["wait_seconds"]))
    return reading


ARGUMENT_SPEC = argument_spec(
    names={"type": "list", "elements": "str", "required": True, "aliases": ["alarm_names"]},
    insufficient_data={"type": "str", "choices": ["ok", "alarm"], "default": "ok"},
    allow_missing={"type": "bool", "default": False},
    wait_seconds={"type": "float", "default": 0},
    poll_interval={"type": "float", "default": 10},
)


def main():
    run_module(run, ARGUMENT_SPEC)


if __name__ == "__main__":
    main()

#!/usr/bin/python
"""Ansible module: an Application Load Balancer's requests and 5xx answers over a time window."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: lb_metrics
short_description: Read the requests and errors the load balancer served over a time window
description:
  - Reads, from CloudWatch (C(AWS/ApplicationELB)), the requests and the 5xx answers of the load
    balancers in front of the given target groups, summed per period over a time window (what
    clients saw while a deployment ran). The deploy report draws them under its timeline.
  - Requests are C(RequestCount) per target group and load balancer; errors are
    C(HTTPCode_Target_5XX_Count) (answers of the targets) plus C(HTTPCode_ELB_5XX_Count) (answers
    of the load balancer itself, such as 502 and 503 when no target could answer).
  - Read-only. When CloudWatch cannot be read (no C(cloudwatch:GetMetricData) permission, say),
    it warns and returns no points instead of failing the play that asked; the numbers are for the
    report, never a gate.
version_added: "0.2.0"
author: ec2-fleet project (!UNKNOWN)
options:
  target_group_arns:
    description: Target groups whose traffic to count (their load balancers are looked up).
    type: list
    elements: str
    required: true
  start:
    description: Start of the window, seconds since the epoch (timezone.utc).
    type: float
    required: true
  end:
    description: End of the window, seconds since the epoch (timezone.utc); default now.
    type: float
  period:
    description:
      - Seconds per point. ALB metrics have one-minute resolution on AWS, so 60 and multiples of it
        are what AWS answers with numbers; the local fleet publishes every 5 seconds.
    type: int
    default: 60
extends_documentation_fragment:
  - ec2fleet.fleet.aws
  - ec2fleet.fleet.aws.retries
"""

EXAMPLES = r"""
- name: What the load balancer served during the deploy
  ec2fleet.fleet.lb_metrics:
    target_group_arns: "{{ target_group_arns }}"
    start: "{{ deploy_started }}"
    period: 60
  register: deploy_lb
"""

RETURN = r"""
lb_metrics:
  description: The window's numbers, as the deploy report takes them (empty C(points) when unreadable).
  returned: always
  type: dict
  contains:
    source:
      description: Where the numbers come from.
      type: str
    period:
      description: Seconds per point.
      type: int
    points:
      description: One per period with data, C(t) (epoch seconds, start of the period), C(requests), C(errors).
      type: list
      elements: dict
"""

import time
from datetime import datetime, timezone

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.ec2fleet.fleet.plugins.module_utils.aws import AwsCalls
from ansible_collections.ec2fleet.fleet.plugins.module_utils.deploy import (
    ALB_METRICS_NAMESPACE,
    DeployError,
    argument_spec,
    cloudwatch_dimension,
)

MAX_QUERIES = 500  # GetMetricData's limit per call


def queries(pairs, load_balancers, period):
    """GetMetricData queries: requests and target 5xx per (target group, LB), ELB 5xx per LB."""
    found = []

    def stat(qid, name, dims):
        found.append({"Id": qid, "ReturnData": True, "MetricStat": {
            "Metric": {"Namespace": ALB_METRICS_NAMESPACE, "MetricName": name,
                       "Dimensions": [{"Name": k, "Value": v} for k, v in dims]},
            "Period": period, "Stat": "Sum"}})

    for n, (tg, lb) in enumerate(pairs):
        stat(f"req{n}", "RequestCount", [("TargetGroup", tg), ("LoadBalancer", lb)])
        stat(f"t5xx{n}", "HTTPCode_Target_5XX_Count", [("TargetGroup", tg), ("LoadBalancer", lb)])
    for n, lb in enumerate(load_balancers):
        stat(f"e5xx{n}", "HTTPCode_ELB_5XX_Count", [("LoadBalancer", lb)])
    return found


def points_from(results):
    """Sum the series per timestamp: requests from req*, errors from *5xx*."""
    by_time = {}
    for series in results:
        kind = "requests" if series["Id"].startswith("req") else "errors"
        for stamp, value in zip(series.get("Timestamps", []), series.get("Values", [])):
            t = stamp.timestamp() if hasattr(stamp, "timestamp") else float(stamp)
            point = by_time.setdefault(t, {"t": t, "requests": 0, "errors": 0})
            point[kind] += round(value)
    return [by_time[t] for t in sorted(by_time)]


def read(aws, params, now=None):
    end = params.get("end") or (now if now is not None else time.time())
    period = params["period"]
    groups = aws.call("elbv2", "describe_target_groups", "describe the target groups",
                      TargetGroupArns=params["target_group_arns"])["TargetGroups"]
    pairs, lbs = [], []
    for group in groups:
        for lb_arn in group.get("LoadBalancerArns", []):
            lb = cloudwatch_dimension(lb_arn)
            pairs.append((cloudwatch_dimension(group["TargetGroupArn"]), lb))
            if lb not in lbs:
                lbs.append(lb)
    all_queries = queries(pairs, lbs, period)
    results = []
    for first in range(0, len(all_queries), MAX_QUERIES):
        token = None
        while True:
            kwargs = {"NextToken": token} if token else {}
            page = aws.call(
                "cloudwatch", "get_metric_data", "read the load balancer's metrics",
                MetricDataQueries=all_queries[first:first + MAX_QUERIES],
                StartTime=datetime.fromtimestamp(params["start"] - params["start"] % period, tz=timezone.utc),
                EndTime=datetime.fromtimestamp(end + period, tz=timezone.utc), **kwargs)
            results.extend(page.get("MetricDataResults", []))
            token = page.get("NextToken")
            if not token:
                break
    return {"source": f"CloudWatch {ALB_METRICS_NAMESPACE} ({', '.join(lbs) or 'no load balancer'})", "period": period,
            "points": [p for p in points_from(results) if params["start"] - period < p["t"] <= end]}


ARGUMENT_SPEC = argument_spec(
    target_group_arns={"type": "list", "elements": "str", "required": True},
    start={"type": "float", "required": True},
    end={"type": "float"},
    period={"type": "int", "default": 60},
)


def main():
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    if module.params["period"] < 1:
        module.fail_json(msg=f"period must be at least 1 second, got {module.params['period']}")
    try:
        metrics = read(AwsCalls(module.params), module.params)
    except DeployError as exc:
        module.warn(f"no load balancer numbers for the report: {exc}")
        metrics = {"source": "unavailable", "period": module.params["period"], "points": []}
    module.exit_json(changed=False, lb_metrics=metrics)


if __name__ == "__main__":
    main()

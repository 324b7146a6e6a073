#!/usr/bin/python
"""Ansible module: a CloudWatch composite alarm or metric math alarm, created, updated or deleted
idempotently (what amazon.aws.cloudwatch_metric_alarm cannot do for these two kinds)."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: cloudwatch_alarm
short_description: Manage a CloudWatch composite alarm or metric math alarm
description:
  - Creates, updates or deletes one CloudWatch alarm of the two kinds M(amazon.aws.cloudwatch_metric_alarm)
    does not manage idempotently - a composite alarm (O(rule)); no module of amazon.aws or
    community.aws creates one - and a metric math alarm (O(metrics)), whose C(Metrics) that module
    leaves out of its comparison, so it reports a change on every run and never updates them.
    Use M(amazon.aws.cloudwatch_metric_alarm) for alarms on one metric.
  - The alarm's definition is compared as a whole with what C(DescribeAlarms) returns (defaults
    filled in, dimensions in name order); it is written (C(PutCompositeAlarm) or
    C(PutMetricAlarm)) only when it differs. An alarm of the other kind under the same name is
    deleted first. Writing an alarm leaves its state alone on AWS.
  - Check mode reports what would change without writing; with C(--diff), the definitions before
    and after.
version_added: "1.0.0"
author: ec2-fleet project (!UNKNOWN)
extends_documentation_fragment:
  - ec2fleet.fleet.aws
  - ec2fleet.fleet.aws.retries
options:
  name:
    description: The alarm's name.
    type: str
    required: true
  state:
    description: V(present) or V(absent).
    type: str
    choices: [present, absent]
    default: present
  description:
    description: The alarm's description.
    type: str
    default: ""
  rule:
    description:
      - A composite alarm's rule - the functions C(ALARM), C(OK) and C(INSUFFICIENT_DATA) of an
        alarm name or ARN (quoted or not), C(TRUE) and C(FALSE), combined with C(AND), C(OR), C(NOT)
        and parentheses. The alarms it names must exist (AWS refuses the rule otherwise).
      - Exactly one of O(rule) and O(metrics) with O(state=present).
    type: str
  metrics:
    description:
      - A metric math alarm's queries, as C(PutMetricAlarm)'s C(Metrics) in snake case - metric
        queries (O(metrics[].metric_stat)) and expressions of them (O(metrics[].expression)); the
        one with O(metrics[].return_data) (exactly one) is the alarm's value.
    type: list
    elements: dict
    suboptions:
      id:
        description: The query's id (a lower-case letter first), used in expressions.
        type: str
        required: true
      expression:
        description: A metric math expression of other queries' ids, such as C(100 * errors / requests).
        type: str
      metric_stat:
        description: A metric and how to aggregate it.
        type: dict
        suboptions:
          metric:
            description: C(namespace), C(metric_name) and C(dimensions) (a dict, or a list of C(name)/C(value) dicts).
            type: dict
            required: true
          period:
            description: Seconds per datapoint (10, 30, or a multiple of 60).
            type: int
            required: true
          stat:
            description: The statistic, such as V(Sum), V(Average) or V(p99).
            type: str
            required: true
          unit:
            description: Only data published with this unit.
            type: str
      label:
        description: A label for the query.
        type: str
      return_data:
        description: Whether this query is the alarm's value.
        type: bool
        default: true
      period:
        description: Seconds per datapoint of an expression (rarely needed).
        type: int
  comparison:
    description: How the value is compared with O(threshold) (metric math alarms).
    type: str
    choices: [GreaterThanOrEqualToThreshold, GreaterThanThreshold, LessThanThreshold, LessThanOrEqualToThreshold]
  threshold:
    description: The threshold (metric math alarms).
    type: float
  evaluation_periods:
    description: How many recent periods are evaluated (metric math alarms).
    type: int
  datapoints_to_alarm:
    description: How many of them must breach to go to ALARM (metric math alarms); default O(evaluation_periods).
    type: int
  treat_missing_data:
    description: How missing datapoints count (metric math alarms).
    type: str
    choices: [missing, ignore, breaching, notBreaching]
    default: missing
  actions_enabled:
    description: Whether the alarm's actions run.
    type: bool
    default: true
  alarm_actions:
    description: ARNs of actions on entering ALARM (SNS topics, ...).
    type: list
    elements: str
    default: []
  ok_actions:
    description: ARNs of actions on entering OK.
    type: list
    elements: str
    default: []
  insufficient_data_actions:
    description: ARNs of actions on entering INSUFFICIENT_DATA.
    type: list
    elements: str
    default: []
notes:
  - "IAM: C(cloudwatch:DescribeAlarms), C(cloudwatch:PutCompositeAlarm) or C(cloudwatch:PutMetricAlarm), and
    C(cloudwatch:DeleteAlarms)."
seealso:
  - module: amazon.aws.cloudwatch_metric_alarm
  - module: ec2fleet.fleet.alarm_state
"""

EXAMPLES = r"""
- name: The 5xx rate of the web tier, in percent of its requests
  ec2fleet.fleet.cloudwatch_alarm:
    name: web-target-5xx-rate
    metrics:
      - id: errors
        return_data: false
        metric_stat:
          metric:
            namespace: AWS/ApplicationELB
            metric_name: HTTPCode_Target_5XX_Count
            dimensions: {TargetGroup: targetgroup/web/0123456789abcdef, LoadBalancer: app/web/0123456789abcdef}
          period: 60
          stat: Sum
      - id: requests
        return_data: false
        metric_stat:
          metric:
            namespace: AWS/ApplicationELB
            metric_name: RequestCount
            dimensions: {TargetGroup: targetgroup/web/0123456789abcdef, LoadBalancer: app/web/0123456789abcdef}
          period: 60
          stat: Sum
      - id: rate
        expression: 100 * FILL(errors, 0) / requests
    comparison: GreaterThanThreshold
    threshold: 5
    evaluation_periods: 3
    datapoints_to_alarm: 2
    treat_missing_data: notBreaching

- name: One alarm the deploy names
  ec2fleet.fleet.cloudwatch_alarm:
    name: web-deploy-gate
    description: Any of the web tier's deploy alarms
    rule: ALARM("web-target-5xx") OR ALARM("web-target-5xx-rate") OR ALARM("web-p99")
"""

RETURN = r"""
alarm:
  description: The alarm's definition as written (or as found, when nothing changed), in the API's names; empty when absent.
  returned: always
  type: dict
  sample: {"AlarmName": "web-deploy-gate", "AlarmRule": "ALARM(\"web-target-5xx\")", "AlarmDescription": "",
           "ActionsEnabled": true, "AlarmActions": [], "OKActions": [], "InsufficientDataActions": []}
kind:
  description: V(composite) or V(metric), what O(name) is now; null when absent.
  returned: always
  type: str
api_calls:
  description: AWS API operations this call made, by operation name.
  returned: always
  type: dict
  sample: {"DescribeAlarms": 1, "PutCompositeAlarm": 1}
"""

from ansible_collections.ec2fleet.fleet.plugins.module_utils.alarms import ALARM_TYPES
from ansible_collections.ec2fleet.fleet.plugins.module_utils.aws import AwsCalls
from ansible_collections.ec2fleet.fleet.plugins.module_utils.deploy import DeployError, argument_spec, run_module

MATH_KEYS = ("ComparisonOperator", "Threshold", "EvaluationPeriods", "DatapointsToAlarm", "TreatMissingData")


def _dimensions(value):
    items = value.items() if isinstance(value, dict) else [(d.get("name", d.get("Name")), d.get("value", d.get("Value")))
                                                           for d in value or []]
    return sorted(({"Name": str(k), "Value": str(v)} for k, v in items), key=lambda d: d["Name"])


def _query(entry, snake):
    """One Metrics entry in the API's names, defaults filled in (from the module's snake case or the API's)."""
    key = (lambda s, c: s) if snake else (lambda s, c: c)
    found = {"Id": entry[key("id", "Id")], "ReturnData": entry.get(key("return_data", "ReturnData")) is not False}
    for s, c in (("expression", "Expression"), ("label", "Label"), ("period", "Period")):
        if entry.get(key(s, c)) not in (None, ""):
            found[c] = entry[key(s, c)]
    stat = entry.get(key("metric_stat", "MetricStat"))
    if stat:
        metric = stat[key("metric", "Metric")]
        found["MetricStat"] = {
            "Metric": {"Namespace": metric[key("namespace", "Namespace")],
                       "MetricName": metric[key("metric_name", "MetricName")],
                       "Dimensions": _dimensions(metric.get(key("dimensions", "Dimensions")))},
            "Period": int(stat[key("period", "Period")]), "Stat": stat[key("stat", "Stat")]}
        if stat.get(key("unit", "Unit")):
            found["MetricStat"]["Unit"] = stat[key("unit", "Unit")]
    return found


def desired(params):
    """The definition the parameters ask for, in the API's names; and its kind."""
    alarm = {"AlarmName": params["name"], "AlarmDescription": params["description"] or "",
             "ActionsEnabled": params["actions_enabled"], "AlarmActions": list(params["alarm_actions"]),
             "OKActions": list(params["ok_actions"]), "InsufficientDataActions": list(params["insufficient_data_actions"])}
    if params["rule"] is not None:
        if not params["rule"].strip():
            raise DeployError("rule must not be empty")
        return {**alarm, "AlarmRule": params["rule"]}, "composite"
    missing = [o for o in ("comparison", "threshold", "evaluation_periods") if params[o] is None]
    if missing:
        raise DeployError(f"a metric math alarm needs {', '.join(missing)}")
    queries = [_query(entry, snake=True) for entry in params["metrics"]]
    returning = [q["Id"] for q in queries if q["ReturnData"]]
    if len(returning) != 1:
        raise DeployError(f"exactly one of the metrics must have return_data true, got {len(returning)}: "
                          f"{', '.join(returning) or 'none'}")
    for query in queries:
        if ("Expression" in query) == ("MetricStat" in query):
            raise DeployError(f"metrics entry {query['Id']}: give either expression or metric_stat")
    return {**alarm, "Metrics": queries, "ComparisonOperator": params["comparison"],
            "Threshold": float(params["threshold"]), "EvaluationPeriods": params["evaluation_periods"],
            "DatapointsToAlarm": params["datapoints_to_alarm"] or params["evaluation_periods"],
            "TreatMissingData": params["treat_missing_data"]}, "metric"


def current(aws, name):
    """(definition in the same shape as desired(), kind) of the existing alarm, or (None, None)."""
    page = aws.call("cloudwatch", "describe_alarms", f"describe alarm {name}", AlarmNames=[name],
                    AlarmTypes=list(ALARM_TYPES))
    for found in page.get("CompositeAlarms", []):
        if found["AlarmName"] == name:
            alarm = {"AlarmName": name, "AlarmDescription": found.get("AlarmDescription", ""),
                     "AlarmRule": found.get("AlarmRule", "")}
            return {**alarm, **_actions(found)}, "composite"
    for found in page.get("MetricAlarms", []):
        if found["AlarmName"] == name:
            alarm = {"AlarmName": name, "AlarmDescription": found.get("AlarmDescription", ""), **_actions(found)}
            if found.get("Metrics"):
                alarm["Metrics"] = [_query(q, snake=False) for q in found["Metrics"]]
                alarm.update({k: found.get(k) for k in MATH_KEYS})
                alarm["Threshold"] = float(alarm["Threshold"]) if alarm["Threshold"] is not None else None
                alarm["DatapointsToAlarm"] = alarm["DatapointsToAlarm"] or alarm["EvaluationPeriods"]
                alarm["TreatMissingData"] = alarm["TreatMissingData"] or "missing"
            return alarm, "metric"
    return None, None


def _actions(found):
    return {"ActionsEnabled": found.get("ActionsEnabled", True), "AlarmActions": found.get("AlarmActions", []),
            "OKActions": found.get("OKActions", []), "InsufficientDataActions": found.get("InsufficientDataActions", [])}


def run(module):
    params = module.params
    aws = AwsCalls(params)
    name = params["name"]
    before, before_kind = current(aws, name)
    if params["state"] == "absent":
        if before is not None and not module.check_mode:
            aws.call("cloudwatch", "delete_alarms", f"delete alarm {name}", AlarmNames=[name])
        return {"changed": before is not None, "alarm": {}, "kind": None,
                "diff": {"before": before or {}, "after": {}}, "api_calls": aws.sorted_api_calls()}
    after, kind = desired(params)
    changed = before != after
    if changed and not module.check_mode:
        if before_kind not in (None, kind):
            aws.call("cloudwatch", "delete_alarms", f"replace the {before_kind} alarm {name}", AlarmNames=[name])
        if kind == "composite":
            aws.call("cloudwatch", "put_composite_alarm", f"write composite alarm {name}", **after)
        else:
            aws.call("cloudwatch", "put_metric_alarm", f"write metric math alarm {name}", **after)
    return {"changed": changed, "alarm": after, "kind": kind, "diff": {"before": before or {}, "after": after},
            "api_calls": aws.sorted_api_calls()}


STAT_SPEC = {"metric": {"type": "dict", "required": True}, "period": {"type": "int", "required": True},
             "stat": {"type": "str", "required": True}, "unit": {"type": "str"}}
QUERY_SPEC = {"id": {"type": "str", "required": True}, "expression": {"type": "str"},
              "metric_stat": {"type": "dict", "options": STAT_SPEC}, "label": {"type": "str"},
              "return_data": {"type": "bool", "default": True}, "period": {"type": "int"}}
ARGUMENT_SPEC = argument_spec(
    name={"type": "str", "required": True},
    state={"type": "str", "choices": ["present", "absent"], "default": "present"},
    description={"type": "str", "default": ""},
    rule={"type": "str"},
    metrics={"type": "list", "elements": "dict", "options": QUERY_SPEC},
    comparison={"type": "str", "choices": ["GreaterThanOrEqualToThreshold", "GreaterThanThreshold",
                                           "LessThanThreshold", "LessThanOrEqualToThreshold"]},
    threshold={"type": "float"},
    evaluation_periods={"type": "int"},
    datapoints_to_alarm={"type": "int"},
    treat_missing_data={"type": "str", "choices": ["missing", "ignore", "breaching", "notBreaching"],
                        "default": "missing"},
    actions_enabled={"type": "bool", "default": True},
    alarm_actions={"type": "list", "elements": "str", "default": []},
    ok_actions={"type": "list", "elements": "str", "default": []},
    insufficient_data_actions={"type": "list", "elements": "str", "default": []},
)


def main():
    run_module(run, ARGUMENT_SPEC, mutually_exclusive=[["rule", "metrics"]],
               required_if=[["state", "present", ["rule", "metrics"], True]])


if __name__ == "__main__":
    main()

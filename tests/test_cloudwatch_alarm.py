"""ec2fleet.fleet.cloudwatch_alarm against the emulator: composite and metric math alarms written only
when their definition differs, check mode and diff, a kind replaced, deletion, one-line errors."""

from __future__ import annotations

import boto3
import pytest
from deploy_support import run_module

pytestmark = [pytest.mark.emulator, pytest.mark.usefixtures("aws")]

ERRORS = {"id": "errors", "return_data": False, "metric_stat": {
    "metric": {"namespace": "AWS/ApplicationELB", "metric_name": "HTTPCode_Target_5XX_Count",
               "dimensions": {"TargetGroup": "targetgroup/web/1", "LoadBalancer": "app/web/2"}},
    "period": 60, "stat": "Sum"}}
REQUESTS = {"id": "requests", "return_data": False, "metric_stat": {
    "metric": {"namespace": "AWS/ApplicationELB", "metric_name": "RequestCount",
               "dimensions": [{"name": "LoadBalancer", "value": "app/web/2"}, {"name": "TargetGroup", "value": "targetgroup/web/1"}]},
    "period": 60, "stat": "Sum"}}
RATE = {"name": "web-rate", "metrics": [ERRORS, REQUESTS, {"id": "rate", "expression": "100 * errors / requests"}],
        "comparison": "GreaterThanThreshold", "threshold": 5, "evaluation_periods": 3, "datapoints_to_alarm": 2,
        "treat_missing_data": "notBreaching"}


def described(name):
    found = boto3.client("cloudwatch").describe_alarms(AlarmNames=[name], AlarmTypes=["MetricAlarm", "CompositeAlarm"])
    return (found["MetricAlarms"] + found["CompositeAlarms"] or [None])[0]


def test_metric_math_alarm_written_once_then_updated_when_it_differs():
    checked = run_module("ec2fleet.fleet.cloudwatch_alarm", RATE, check=True)
    assert checked["changed"] is True and described("web-rate") is None
    assert checked["diff"]["before"] == {} and checked["diff"]["after"]["Threshold"] == 5.0
    made = run_module("ec2fleet.fleet.cloudwatch_alarm", RATE)
    assert made["changed"] is True and made["kind"] == "metric" and made["api_calls"]["PutMetricAlarm"] == 1
    alarm = described("web-rate")
    assert [m["Id"] for m in alarm["Metrics"]] == ["errors", "requests", "rate"] and alarm["DatapointsToAlarm"] == 2
    # The same definition, dimensions given the other way round: nothing to write.
    again = run_module("ec2fleet.fleet.cloudwatch_alarm", RATE)
    assert again["changed"] is False and again["api_calls"] == {"DescribeAlarms": 1}
    stricter = {**RATE, "metrics": [ERRORS, REQUESTS, {"id": "rate", "expression": "100 * FILL(errors, 0) / requests"}]}
    updated = run_module("ec2fleet.fleet.cloudwatch_alarm", stricter)
    assert updated["changed"] is True
    assert updated["diff"]["before"]["Metrics"][2]["Expression"] == "100 * errors / requests"
    assert described("web-rate")["Metrics"][2]["Expression"] == "100 * FILL(errors, 0) / requests"


def test_composite_alarm_replaces_a_metric_alarm_of_its_name_and_is_deleted():
    run_module("ec2fleet.fleet.cloudwatch_alarm", RATE)
    gate = {"name": "web-gate", "rule": 'ALARM("web-rate")', "description": "gate"}
    assert run_module("ec2fleet.fleet.cloudwatch_alarm", gate)["changed"] is True
    assert run_module("ec2fleet.fleet.cloudwatch_alarm", gate)["changed"] is False
    assert described("web-gate")["AlarmRule"] == 'ALARM("web-rate")'
    # Same name, now a composite: the metric alarm goes, the composite comes.
    swapped = run_module("ec2fleet.fleet.cloudwatch_alarm", {"name": "web-rate", "rule": "ALARM(web-gate)"})
    assert swapped["changed"] is True and swapped["api_calls"].get("DeleteAlarms") == 1
    assert described("web-rate")["AlarmRule"] == "ALARM(web-gate)" and "Metrics" not in described("web-rate")
    gone = run_module("ec2fleet.fleet.cloudwatch_alarm", {"name": "web-gate", "state": "absent"})
    assert gone["changed"] is True and described("web-gate") is None
    assert run_module("ec2fleet.fleet.cloudwatch_alarm", {"name": "web-gate", "state": "absent"})["changed"] is False


@pytest.mark.parametrize(("args", "message"), [
    ({**RATE, "metrics": [ERRORS, REQUESTS]}, "exactly one of the metrics must have return_data true, got 0"),
    ({**RATE, "metrics": [{"id": "rate", "expression": "1", "metric_stat": ERRORS["metric_stat"]}]},
     "metrics entry rate: give either expression or metric_stat"),
    ({"name": "x", "metrics": RATE["metrics"]}, "a metric math alarm needs comparison, threshold, evaluation_periods"),
    ({"name": "x", "rule": "ALARM(a)", "metrics": RATE["metrics"]}, "mutually exclusive"),
    ({"name": "x"}, "state is present but any of the following are missing: rule, metrics"),
])
def test_bad_definitions_fail_in_one_line(args, message):
    result = run_module("ec2fleet.fleet.cloudwatch_alarm", args)
    assert result["failed"] is True and message in result["msg"], result
    assert described("x") is None and described("web-rate") is None

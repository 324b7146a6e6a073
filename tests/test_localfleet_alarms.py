"""The local fleet's stand-in for CloudWatch's alarm evaluation (ec2fleet/localfleet/alarms.py): metric
math and composite rules read and evaluated, CloudWatch's rules for M of N and missing data, and
against the emulator: data published (by hand and by the balancer's publisher), alarms evaluated,
states changed with reasons in CloudWatch's manner."""

from __future__ import annotations

import json
import math
import time
from collections import Counter
from datetime import UTC, datetime

import boto3
import pytest
from ansible_collections.ec2fleet.fleet.plugins.module_utils.deploy import cloudwatch_dimension

from ec2fleet.localfleet import lbmetrics
from ec2fleet.localfleet.alarms import Evaluator, Expression, Rule, Unsupported, judge, minimum_samples

LB = "arn:aws:elasticloadbalancing:us-east-1:123456789012:loadbalancer/app/local-web/eb3e88bfa7a0f656"
TG = "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/local-web/54ff888949a76553"
DIMS = [{"Name": "TargetGroup", "Value": cloudwatch_dimension(TG)},
        {"Name": "LoadBalancer", "Value": cloudwatch_dimension(LB)}]
GRID = [0.0, 10.0, 20.0, 30.0, 40.0, 50.0]


# --- metric math and rules, pure --------------------------------------------------------------------

def test_metric_math_rate_with_fill_and_division_by_zero():
    errors = {0.0: 2.0, 20.0: 5.0}
    requests = {0.0: 100.0, 10.0: 50.0, 20.0: 0.0}
    lookup = {"e": errors, "r": requests}.__getitem__
    rate = Expression("100 * FILL(e, 0) / r").evaluate(lookup, GRID[:3])
    assert rate == {0.0: 2.0, 10.0: 0.0}  # 20.0: 5 errors of 0 requests is no datapoint
    assert Expression("-(e - 1) + ABS(-2)").evaluate(lookup, GRID) == {0.0: 1.0, 20.0: -2.0}
    assert Expression("2 * (3 + 4) / 7").evaluate(lookup, GRID) == 2.0
    assert Expression("e*r").evaluate(lookup, GRID) == {0.0: 200.0, 20.0: 0.0}  # points on both sides only
    for text, why in (("ANOMALY_DETECTION_BAND(m1)", "not stood in for"), ("m1 +", "expected"),
                      ("m1 m2", "cannot read metric math")):
        with pytest.raises(Unsupported, match=why):
            Expression(text)


def test_composite_rules_read_quoted_bare_and_arn_names():
    rule = Rule('ALARM("web 5xx") AND NOT (OK(latency) OR INSUFFICIENT_DATA("arn:aws:cloudwatch:us-east-1:1:alarm:c"))')
    assert rule.names() == {"web 5xx", "latency", "c"}
    states = {"web 5xx": "ALARM", "latency": "ALARM", "c": "OK"}
    assert rule.evaluate(states.get) is True
    assert rule.evaluate({**states, "latency": "OK"}.get) is False
    assert rule.evaluate({**states, "web 5xx": "INSUFFICIENT_DATA"}.get) is False
    # OR binds looser than AND; NOT tightest; TRUE and FALSE are constants.
    assert Rule("ALARM(a) OR ALARM(b) AND FALSE").evaluate({"a": "ALARM", "b": "ALARM"}.get) is True
    assert Rule("not alarm(a) and true").evaluate({"a": "OK"}.get) is True
    for text in ("ALARM(a) AND", "ALARM()", 'ALARM("a)', "(ALARM(a)", "MAYBE(a)"):
        with pytest.raises(Unsupported):
            Rule(text)


def metric_alarm(**settings):
    return {"ComparisonOperator": "GreaterThanThreshold", "Threshold": 5.0, "EvaluationPeriods": 3, **settings}


@pytest.mark.parametrize(("points", "settings", "state"), [
    # 3 of 3 with every datapoint there: the three most recent decide.
    ({30.0: 6, 40.0: 7, 50.0: 8}, {}, "ALARM"),
    ({30.0: 6, 40.0: 7, 50.0: 1}, {}, "OK"),
    # 2 of 3 (DatapointsToAlarm).
    ({30.0: 6, 40.0: 1, 50.0: 8}, {"DatapointsToAlarm": 2}, "ALARM"),
    # Enough datapoints further back in the evaluation range: missing data is not needed.
    ({0.0: 9, 10.0: 9, 30.0: 9}, {"TreatMissingData": "notBreaching"}, "ALARM"),
    # Fewer than N datapoints: missing ones count by TreatMissingData.
    ({50.0: 9}, {"TreatMissingData": "breaching"}, "ALARM"),
    ({50.0: 9}, {"TreatMissingData": "notBreaching"}, "OK"),
    ({40.0: 9, 50.0: 9}, {"TreatMissingData": "missing"}, None),  # undecided: the state stays
    ({40.0: 9, 50.0: 9}, {"TreatMissingData": "missing", "DatapointsToAlarm": 2}, "ALARM"),
    ({50.0: 1}, {"TreatMissingData": "missing", "DatapointsToAlarm": 1, "EvaluationPeriods": 3}, None),
    ({40.0: 1, 50.0: 1}, {"TreatMissingData": "ignore", "DatapointsToAlarm": 3}, "OK"),  # 0 + 1 missing < 3
    # No datapoint at all.
    ({}, {}, "INSUFFICIENT_DATA"),
    ({}, {"TreatMissingData": "ignore"}, None),
    ({}, {"TreatMissingData": "breaching"}, "ALARM"),
    ({}, {"TreatMissingData": "notBreaching"}, "OK"),
])
def test_cloudwatch_rules_for_m_of_n_and_missing_data(points, settings, state):
    assert judge(metric_alarm(**settings), {t: float(v) for t, v in points.items()}, GRID).state == state


def test_reasons_read_like_cloudwatch():
    alarm = metric_alarm(EvaluationPeriods=2, DatapointsToAlarm=1, TreatMissingData="notBreaching")
    verdict = judge(alarm, {50.0: 12.0}, GRID)
    assert verdict.reason == ("Threshold Crossed: 1 out of the last 2 datapoints [12 (01/01/70 00:00:50)] and "
                              "1 missing datapoint treated as [NonBreaching] was greater than the threshold (5) "
                              "(minimum 1 datapoint for OK -> ALARM transition).")
    assert verdict.data["recentDatapoints"] == [12.0] and verdict.data["threshold"] == 5.0
    ok = judge(metric_alarm(EvaluationPeriods=1, ComparisonOperator="LessThanThreshold"), {50.0: 12.0}, GRID)
    assert ok.state == "OK" and "1 out of the last 1 datapoints [12 (01/01/70 00:00:50)] was not less than" in ok.reason
    assert judge(metric_alarm(), {}, GRID).reason == "Insufficient Data: 3 datapoints were unknown."


def test_percentiles_with_low_sample_counts_keep_the_state_when_told():
    assert minimum_samples(99) == pytest.approx(1000) and minimum_samples(10) == pytest.approx(100)
    alarm = metric_alarm(EvaluationPeriods=1, ExtendedStatistic="p90", EvaluateLowSampleCountPercentile="ignore")
    assert judge(alarm, {50.0: 9.0}, GRID, samples={50.0: 99}).state is None
    assert judge(alarm, {50.0: 9.0}, GRID, samples={50.0: 100}).state == "ALARM"


# --- against the emulator ----------------------------------------------------------------------------

def now_aligned():
    """A recent minute boundary (the emulator keeps timestamps as given; CloudWatch would refuse old ones)."""
    return math.floor(time.time() / 60) * 60 - 120


def put(cloudwatch, name, stamp, dims=DIMS, **value):
    cloudwatch.put_metric_data(Namespace="AWS/ApplicationELB", MetricData=[
        {"MetricName": name, "Dimensions": dims, "Timestamp": datetime.fromtimestamp(stamp, tz=UTC), **value}])


def state(cloudwatch, name):
    found = cloudwatch.describe_alarms(AlarmNames=[name], AlarmTypes=["MetricAlarm", "CompositeAlarm"])
    return (found["MetricAlarms"] + found["CompositeAlarms"])[0]


@pytest.mark.emulator
def test_metric_percentile_and_math_alarms_follow_the_data(aws):
    cloudwatch = boto3.client("cloudwatch")
    base = now_aligned()
    clock = [base + 12.0]  # the period [base, base + 10) is complete 2 s after its end
    cloudwatch.put_metric_alarm(AlarmName="web-5xx", Namespace="AWS/ApplicationELB",
                                MetricName="HTTPCode_Target_5XX_Count", Dimensions=DIMS, Statistic="Sum",
                                Period=10, EvaluationPeriods=1, Threshold=5, ComparisonOperator="GreaterThanThreshold",
                                TreatMissingData="notBreaching")
    cloudwatch.put_metric_alarm(AlarmName="web-p99", Namespace="AWS/ApplicationELB", MetricName="TargetResponseTime",
                                Dimensions=DIMS, ExtendedStatistic="p99", Period=10, EvaluationPeriods=1,
                                Threshold=1.0, ComparisonOperator="GreaterThanThreshold")
    cloudwatch.put_metric_alarm(
        AlarmName="web-5xx-rate", EvaluationPeriods=2, DatapointsToAlarm=2, Threshold=10,
        ComparisonOperator="GreaterThanOrEqualToThreshold", TreatMissingData="notBreaching", Metrics=[
            {"Id": "errors", "ReturnData": False, "MetricStat": {"Metric": {
                "Namespace": "AWS/ApplicationELB", "MetricName": "HTTPCode_Target_5XX_Count", "Dimensions": DIMS},
                "Period": 10, "Stat": "Sum"}},
            {"Id": "requests", "ReturnData": False, "MetricStat": {"Metric": {
                "Namespace": "AWS/ApplicationELB", "MetricName": "RequestCount", "Dimensions": DIMS},
                "Period": 10, "Stat": "Sum"}},
            {"Id": "rate", "Expression": "100 * FILL(errors, 0) / requests", "ReturnData": True}])
    cloudwatch.put_metric_alarm(AlarmName="web-quiet", Namespace="AWS/ApplicationELB", MetricName="RequestCount",
                                Dimensions=[{"Name": "LoadBalancer", "Value": "app/elsewhere/1"}], Statistic="Sum",
                                Period=10, EvaluationPeriods=1, Threshold=1, ComparisonOperator="LessThanThreshold")
    evaluator = Evaluator(cloudwatch, clock=lambda: clock[0])

    # The first period: 100 requests, 8 errors (in two windows), response times mostly fast.
    put(cloudwatch, "RequestCount", base, Value=100)
    put(cloudwatch, "HTTPCode_Target_5XX_Count", base, Value=3)
    put(cloudwatch, "HTTPCode_Target_5XX_Count", base + 5, Value=5)
    put(cloudwatch, "TargetResponseTime", base, Values=[0.05, 2.0], Counts=[98, 2])
    changes = evaluator.evaluate()
    assert {line.split(":")[0] for line in changes} == {"alarm web-5xx", "alarm web-p99", "alarm web-quiet"}
    five = state(cloudwatch, "web-5xx")
    assert five["StateValue"] == "ALARM"
    assert five["StateReason"].startswith("Threshold Crossed: 1 out of the last 1 datapoints [8 (")
    assert json.loads(five["StateReasonData"])["recentDatapoints"] == [8.0]
    assert state(cloudwatch, "web-p99")["StateValue"] == "ALARM"  # p99 of 100: the 99th value, 2.0 s
    assert state(cloudwatch, "web-quiet")["StateValue"] == "INSUFFICIENT_DATA"  # no data, treated as missing
    assert state(cloudwatch, "web-5xx-rate")["StateValue"] == "OK"  # one period at 8 %: 2 of 2 needed
    assert evaluator.evaluate() == []  # nothing changed: no call, no new timestamps

    # The second period: 5 % errors, then 20 %: the rate alarm needs two periods at 10 % or more.
    put(cloudwatch, "RequestCount", base + 10, Value=100)
    put(cloudwatch, "HTTPCode_Target_5XX_Count", base + 10, Value=20)
    put(cloudwatch, "TargetResponseTime", base + 10, Values=[0.05], Counts=[100])
    clock[0] += 10
    evaluator.evaluate()
    assert state(cloudwatch, "web-5xx-rate")["StateValue"] == "OK"  # 8 % then 20 %
    assert state(cloudwatch, "web-p99")["StateValue"] == "OK"
    put(cloudwatch, "RequestCount", base + 20, Value=50)
    put(cloudwatch, "HTTPCode_Target_5XX_Count", base + 20, Value=10)
    clock[0] += 10
    evaluator.evaluate()
    rate = state(cloudwatch, "web-5xx-rate")
    assert rate["StateValue"] == "ALARM"
    assert rate["StateReason"].startswith("Threshold Crossed: 2 out of the last 2 datapoints [20 (")

    # Quiet periods: errors missing count as not breaching; no requests at all is no rate datapoint.
    clock[0] += 30
    evaluator.evaluate()
    assert state(cloudwatch, "web-5xx")["StateValue"] == "OK"
    assert state(cloudwatch, "web-5xx-rate")["StateValue"] == "OK"


@pytest.mark.emulator
def test_composite_alarms_follow_their_children(aws):
    cloudwatch = boto3.client("cloudwatch")
    base = now_aligned()
    clock = [base + 12.0]
    for name in ("web-5xx", "web-unhealthy"):
        metric = "HTTPCode_Target_5XX_Count" if name == "web-5xx" else "UnHealthyHostCount"
        cloudwatch.put_metric_alarm(AlarmName=name, Namespace="AWS/ApplicationELB", MetricName=metric, Dimensions=DIMS,
                                    Statistic="Maximum", Period=10, EvaluationPeriods=1, Threshold=0,
                                    ComparisonOperator="GreaterThanThreshold", TreatMissingData="notBreaching")
    cloudwatch.put_composite_alarm(AlarmName="web-any", AlarmRule='ALARM("web-5xx") OR ALARM(web-unhealthy)')
    cloudwatch.put_composite_alarm(AlarmName="web-gate", AlarmRule="ALARM(web-any) AND NOT ALARM(maintenance)")
    cloudwatch.put_composite_alarm(AlarmName="web-both", AlarmRule="ALARM(web-5xx) AND ALARM(web-unhealthy)")
    evaluator = Evaluator(cloudwatch, clock=lambda: clock[0])
    evaluator.evaluate()
    assert state(cloudwatch, "web-any")["StateValue"] == "OK"
    gate = state(cloudwatch, "web-gate")  # names an alarm that does not exist
    assert gate["StateValue"] == "INSUFFICIENT_DATA" and "maintenance" in gate["StateReason"]

    cloudwatch.put_metric_alarm(AlarmName="maintenance", Namespace="Ops", MetricName="Maintenance", Statistic="Maximum",
                                Period=10, EvaluationPeriods=1, Threshold=0, ComparisonOperator="GreaterThanThreshold",
                                TreatMissingData="notBreaching")
    put(cloudwatch, "UnHealthyHostCount", base + 10, Values=[0, 1], Counts=[5, 5])
    clock[0] += 10
    changes = evaluator.evaluate()
    assert [line.split(":")[0] for line in changes] == ["alarm web-unhealthy", "alarm web-any", "alarm web-gate"]
    any_ = state(cloudwatch, "web-any")
    assert any_["StateValue"] == "ALARM"
    assert any_["StateReason"].startswith("arn:aws:cloudwatch:us-east-1:123456789012:alarm:web-unhealthy "
                                          "transitioned to ALARM at ")
    triggering = json.loads(any_["StateReasonData"])["triggeringAlarms"]
    assert {t["state"]["value"] for t in triggering} == {"ALARM", "OK"}
    assert state(cloudwatch, "web-gate")["StateValue"] == "ALARM"  # a composite of a composite, same pass
    assert state(cloudwatch, "web-both")["StateValue"] == "OK"

    clock[0] += 10  # the next period has no unhealthy host
    put(cloudwatch, "UnHealthyHostCount", base + 20, Values=[0], Counts=[10])
    evaluator.evaluate()
    assert [state(cloudwatch, n)["StateValue"] for n in ("web-unhealthy", "web-any", "web-gate")] == ["OK"] * 3


@pytest.mark.emulator
def test_the_balancers_numbers_trip_the_recommended_alarms(aws):
    """The publisher fleetd runs and the evaluator together: a window of slow answers and errors
    puts the p99 and 5xx alarms in ALARM, a healthy window brings them back."""
    cloudwatch = boto3.client("cloudwatch")
    base = now_aligned()
    clock = [base]
    publisher = lbmetrics.Publisher(cloudwatch, LB, TG, period=5, now=lambda: clock[0])
    evaluator = Evaluator(cloudwatch, clock=lambda: clock[0])
    cloudwatch.put_metric_alarm(AlarmName="p99", Namespace="AWS/ApplicationELB", MetricName="TargetResponseTime",
                                Dimensions=DIMS, ExtendedStatistic="p99", Period=10, EvaluationPeriods=1,
                                Threshold=1.5, ComparisonOperator="GreaterThanThreshold")
    cloudwatch.put_metric_alarm(AlarmName="5xx", Namespace="AWS/ApplicationELB", MetricName="HTTPCode_Target_5XX_Count",
                                Dimensions=DIMS, Statistic="Sum", Period=10, EvaluationPeriods=1, Threshold=5,
                                ComparisonOperator="GreaterThanThreshold", TreatMissingData="notBreaching")
    cloudwatch.put_metric_alarm(AlarmName="unhealthy", Namespace="AWS/ApplicationELB", MetricName="UnHealthyHostCount",
                                Dimensions=DIMS, Statistic="Maximum", Period=10, EvaluationPeriods=1, Threshold=0,
                                ComparisonOperator="GreaterThanThreshold", TreatMissingData="notBreaching")

    def window(requests, errors, times, unhealthy=0):
        sample = {"requests": requests, "frontend_5xx": errors, "target_5xx": errors, "healthy": 3,
                  "unhealthy": unhealthy}
        publisher.sample({**sample, "requests": 0, "frontend_5xx": 0, "target_5xx": 0})
        publisher.sample(sample)
        publisher.record_times({"web": times})
        clock[0] += 5
        publisher.flush()
        publisher.last = {}  # the next window counts from zero again (as after a reload)

    window(100, 0, Counter({40: 100}))
    window(100, 9, Counter({40: 90, 2200: 10}), unhealthy=1)  # a bad canary: errors and slow answers
    clock[0] += 2
    evaluator.evaluate()
    assert {n: state(cloudwatch, n)["StateValue"] for n in ("p99", "5xx", "unhealthy")} == \
        {"p99": "ALARM", "5xx": "ALARM", "unhealthy": "ALARM"}
    clock[0] -= 2
    window(100, 0, Counter({40: 100}))
    window(100, 0, Counter({45: 100}))
    clock[0] += 2
    evaluator.evaluate()
    assert {n: state(cloudwatch, n)["StateValue"] for n in ("p99", "5xx", "unhealthy")} == \
        {"p99": "OK", "5xx": "OK", "unhealthy": "OK"}


@pytest.mark.emulator
def test_what_the_stand_in_cannot_evaluate_is_left_alone(aws, caplog):
    cloudwatch = boto3.client("cloudwatch")
    cloudwatch.put_metric_alarm(
        AlarmName="web-requests-band", EvaluationPeriods=1, ComparisonOperator="LessThanLowerOrGreaterThanUpperThreshold",
        ThresholdMetricId="band", TreatMissingData="breaching", Metrics=[
            {"Id": "m1", "ReturnData": True, "MetricStat": {"Metric": {
                "Namespace": "AWS/ApplicationELB", "MetricName": "RequestCount", "Dimensions": DIMS},
                "Period": 60, "Stat": "Sum"}},
            {"Id": "band", "Expression": "ANOMALY_DETECTION_BAND(m1, 2)"}])
    cloudwatch.put_metric_alarm(
        AlarmName="web-sum", EvaluationPeriods=1, Threshold=1, ComparisonOperator="GreaterThanThreshold",
        TreatMissingData="breaching", Metrics=[
            {"Id": "m1", "ReturnData": False, "MetricStat": {"Metric": {
                "Namespace": "AWS/ApplicationELB", "MetricName": "RequestCount", "Dimensions": DIMS},
                "Period": 60, "Stat": "Sum"}},
            {"Id": "total", "Expression": "SUM(METRICS())", "ReturnData": True}])
    evaluator = Evaluator(cloudwatch)
    assert evaluator.evaluate() == [] and evaluator.evaluate() == []
    assert {state(cloudwatch, n)["StateValue"] for n in ("web-requests-band", "web-sum")} == {"OK"}
    warnings = [r.getMessage() for r in caplog.records if "not evaluated by the stand-in" in r.getMessage()]
    assert warnings == ["alarm web-requests-band is not evaluated by the stand-in: anomaly detection bands",
                        "alarm web-sum is not evaluated by the stand-in: metric math function SUM() is not stood in for"]


class FlakyCloudWatch:
    """Two alarms; reading the first one's data fails (as a call to the emulator can)."""

    def __init__(self):
        self.set = []
        base = {"Namespace": "N", "Dimensions": [], "Statistic": "Sum", "Period": 10, "EvaluationPeriods": 1,
                "Threshold": 0.0, "ComparisonOperator": "GreaterThanThreshold", "TreatMissingData": "breaching",
                "StateValue": "OK"}
        self.metric = [{**base, "AlarmName": "broken", "MetricName": "broken"},
                       {**base, "AlarmName": "fine", "MetricName": "fine"}]

    def get_paginator(self, _operation):
        metric = self.metric

        class Pages:
            def paginate(self, **_kwargs):
                return [{"MetricAlarms": metric, "CompositeAlarms": []}]
        return Pages()

    def get_metric_data(self, MetricDataQueries, **_kwargs):
        if MetricDataQueries[0]["MetricStat"]["Metric"]["MetricName"] == "broken":
            raise ConnectionError("emulator went away")
        return {"MetricDataResults": [{"Id": "value", "Timestamps": [], "Values": []}]}

    def set_alarm_state(self, **kwargs):
        self.set.append((kwargs["AlarmName"], kwargs["StateValue"]))


def test_one_alarm_that_cannot_be_read_does_not_stop_the_others(caplog):
    cloudwatch = FlakyCloudWatch()
    changes = Evaluator(cloudwatch, clock=lambda: 1_000.0).evaluate()
    assert cloudwatch.set == [("fine", "ALARM")] and len(changes) == 1
    assert "alarm broken: not evaluated this time: emulator went away" in caplog.text

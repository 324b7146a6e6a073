"""The emulator's CloudWatch additions (ec2fleet/moto_server.py install_cloudwatch): PutCompositeAlarm,
and percentiles from PutMetricData's Values/Counts, each against the emulator's API."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import boto3
import pytest

from ec2fleet.moto_server import percentile

START = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
DIMS = [{"Name": "TargetGroup", "Value": "targetgroup/web/1"}, {"Name": "LoadBalancer", "Value": "app/lb/2"}]


def test_percentile_is_the_nearest_rank_weighted_by_counts():
    pairs = [(0.1, 90), (0.2, 9), (1.5, 1)]
    assert percentile(pairs, 50) == 0.1
    assert percentile(pairs, 90) == 0.1
    assert percentile(pairs, 91) == 0.2
    assert percentile(pairs, 99) == 0.2
    assert percentile(pairs, 99.5) == 1.5
    assert percentile(pairs, 100) == 1.5
    assert percentile([(3.0, 1)], 0.1) == 3.0
    assert percentile([], 99) is None


@pytest.mark.emulator
def test_composite_alarms_are_created_listed_and_set(aws):
    cloudwatch = boto3.client("cloudwatch")
    cloudwatch.put_metric_alarm(AlarmName="web-5xx", Namespace="AWS/ApplicationELB",
                                MetricName="HTTPCode_Target_5XX_Count", Statistic="Sum", Period=60,
                                EvaluationPeriods=1, Threshold=5, ComparisonOperator="GreaterThanThreshold")
    rule = 'ALARM("web-5xx") OR ALARM(web-latency)'
    cloudwatch.put_composite_alarm(AlarmName="web-deploy-gate", AlarmRule=rule, AlarmDescription="gate")
    found = cloudwatch.describe_alarms(AlarmNames=["web-deploy-gate", "web-5xx"],
                                       AlarmTypes=["CompositeAlarm", "MetricAlarm"])
    assert [a["AlarmName"] for a in found["MetricAlarms"]] == ["web-5xx"]
    (composite,) = found["CompositeAlarms"]
    assert composite["AlarmName"] == "web-deploy-gate" and composite["AlarmRule"] == rule
    cloudwatch.set_alarm_state(AlarmName="web-deploy-gate", StateValue="ALARM", StateReason="test")
    assert cloudwatch.describe_alarms(AlarmNames=["web-deploy-gate"],
                                      AlarmTypes=["CompositeAlarm"])["CompositeAlarms"][0]["StateValue"] == "ALARM"


def stats(cloudwatch, names, period=60, start=START):
    queries = [{"Id": f"q{n}", "MetricStat": {"Metric": {"Namespace": "AWS/ApplicationELB",
                                                         "MetricName": "TargetResponseTime", "Dimensions": DIMS},
                                              "Period": period, "Stat": name}}
               for n, name in enumerate(names)]
    answer = cloudwatch.get_metric_data(MetricDataQueries=queries, StartTime=start,
                                        EndTime=start + timedelta(seconds=period), ScanBy="TimestampAscending")
    by_id = {r["Id"]: r["Values"] for r in answer["MetricDataResults"]}
    return {name: by_id[f"q{n}"] for n, name in enumerate(names)}


@pytest.mark.emulator
def test_values_and_counts_answer_percentiles_and_the_usual_statistics(aws):
    cloudwatch = boto3.client("cloudwatch")
    base = {"MetricName": "TargetResponseTime", "Dimensions": DIMS, "Unit": "Seconds"}
    cloudwatch.put_metric_data(Namespace="AWS/ApplicationELB", MetricData=[
        {**base, "Timestamp": START, "Values": [0.1, 0.2], "Counts": [90_000, 8_999]},
        {**base, "Timestamp": START + timedelta(seconds=20), "Values": [1.5], "Counts": [1_000]},
        {**base, "Timestamp": START + timedelta(seconds=30), "Value": 0.4},  # a plain value joins them
        {**base, "Timestamp": START + timedelta(seconds=61), "Values": [9.0]},  # the next period
    ])
    got = stats(cloudwatch, ["SampleCount", "Sum", "Minimum", "Maximum", "Average", "p50", "p90", "p99", "p99.9",
                             "p100"])
    assert got["SampleCount"] == [100_000]
    assert got["Sum"] == [pytest.approx(90_000 * 0.1 + 8_999 * 0.2 + 1_500 + 0.4)]
    assert got["Minimum"] == [0.1] and got["Maximum"] == [1.5]
    assert got["Average"] == [pytest.approx(got["Sum"][0] / 100_000)]
    assert got["p50"] == [0.1] and got["p90"] == [0.1] and got["p99.9"] == [1.5] and got["p100"] == [1.5]
    # 98,999 values up to 0.2, then the plain 0.4: p99 is the 99,000th value.
    assert got["p99"] == [0.4]
    assert stats(cloudwatch, ["p98.999", "p99.001"]) == {"p98.999": [0.2], "p99.001": [1.5]}
    later = stats(cloudwatch, ["p99", "SampleCount"], start=START + timedelta(seconds=60))
    assert later == {"p99": [9.0], "SampleCount": [1]}

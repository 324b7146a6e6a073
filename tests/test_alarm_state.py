"""ec2fleet.fleet.alarm_state: alarm states read in as few DescribeAlarms calls as the API allows, the
gate's reading (firing, INSUFFICIENT_DATA either way, missing names), and the bake (watch until one
fires). Against the emulator through ansible, plus the watch loop on a scripted clock."""

from __future__ import annotations

import sys
from datetime import UTC, datetime

import boto3
import pytest
from ansible_collections.ec2fleet.fleet.plugins.module_utils import alarms
from ansible_collections.ec2fleet.fleet.plugins.module_utils.deploy import DeployError
from deploy_support import run_module, run_tasks


def metric_alarm(name, cloudwatch=None):
    (cloudwatch or boto3.client("cloudwatch")).put_metric_alarm(
        AlarmName=name, Namespace="AWS/ApplicationELB", MetricName="HTTPCode_Target_5XX_Count",
        Dimensions=[{"Name": "LoadBalancer", "Value": "app/web/1"}], Statistic="Sum", Period=60,
        EvaluationPeriods=1, Threshold=5, ComparisonOperator="GreaterThanThreshold")


def set_state(name, state, reason="test"):
    boto3.client("cloudwatch").set_alarm_state(AlarmName=name, StateValue=state, StateReason=reason)


@pytest.mark.emulator
def test_reads_metric_and_composite_alarms_in_one_call(aws):
    for name in ("web-5xx", "web-latency", "web-unhealthy"):
        metric_alarm(name)
    boto3.client("cloudwatch").put_composite_alarm(AlarmName="web-gate",
                                                   AlarmRule='ALARM("web-5xx") OR ALARM("web-latency")')
    set_state("web-5xx", "ALARM", "Threshold Crossed: 1 out of the last 1 datapoints was greater than the threshold")
    set_state("web-latency", "INSUFFICIENT_DATA")
    set_state("web-gate", "ALARM")
    arn = "arn:aws:cloudwatch:us-east-1:123456789012:alarm:web-unhealthy"
    result = run_module("ec2fleet.fleet.alarm_state", {
        "names": ["web-gate", "web-5xx", "web-latency", arn, "web-5xx", "web-typo"], "allow_missing": True})
    assert result.get("failed") is not True, result
    assert result["changed"] is False
    assert result["api_calls"] == {"DescribeAlarms": 1}
    assert result["firing"] == ["web-gate", "web-5xx"]
    assert result["insufficient"] == ["web-latency"]
    assert result["missing"] == ["web-typo"]
    assert result["ok"] is False and result["polls"] == 1 and result["waited"] < 5
    gate, errors = result["alarms"]["web-gate"], result["alarms"]["web-5xx"]
    assert gate["type"] == "composite" and gate["state"] == "ALARM"
    assert errors["type"] == "metric" and errors["reason"].startswith("Threshold Crossed")
    assert result["alarms"]["web-unhealthy"]["state"] == "OK"
    assert result["alarms"]["web-unhealthy"]["arn"] == arn
    fired = min(datetime.fromisoformat(result["alarms"][n]["updated"]) for n in ("web-gate", "web-5xx"))
    assert datetime.fromisoformat(result["fired_at"]) == fired
    assert result["fired_at_epoch"] == pytest.approx(fired.timestamp())
    assert result["msg"].startswith("2 alarm(s) firing: web-gate, web-5xx")


@pytest.mark.emulator
def test_insufficient_data_counts_as_firing_when_asked(aws):
    metric_alarm("web-latency")
    set_state("web-latency", "INSUFFICIENT_DATA")
    lenient = run_module("ec2fleet.fleet.alarm_state", {"names": ["web-latency"]})
    strict = run_module("ec2fleet.fleet.alarm_state", {"names": ["web-latency"], "insufficient_data": "alarm"})
    assert lenient["firing"] == [] and lenient["ok"] is True and lenient["insufficient"] == ["web-latency"]
    assert strict["firing"] == ["web-latency"] and strict["ok"] is False and strict["fired_at"]


@pytest.mark.emulator
def test_a_missing_alarm_fails_with_its_name(aws):
    metric_alarm("web-5xx")
    result = run_module("ec2fleet.fleet.alarm_state", {"names": ["web-5xx", "web-5xxx"]})
    assert result["failed"] is True
    assert result["msg"].startswith("alarm(s) not found: web-5xxx (region us-east-1, endpoint http://127.0.0.1:")


@pytest.mark.emulator
def test_150_alarms_take_two_calls_and_check_mode_reads_the_same(aws):
    cloudwatch = boto3.client("cloudwatch")
    names = [f"tier-{n:03d}" for n in range(150)]
    for name in names:
        metric_alarm(name, cloudwatch)
    set_state("tier-149", "ALARM")
    result = run_module("ec2fleet.fleet.alarm_state", {"names": names})
    assert result["api_calls"] == {"DescribeAlarms": 2}
    assert len(result["alarms"]) == 150 and result["firing"] == ["tier-149"] and result["missing"] == []
    checked = run_module("ec2fleet.fleet.alarm_state", {"names": names}, check=True)
    assert checked["firing"] == ["tier-149"] and checked["alarms"] == result["alarms"]


@pytest.mark.emulator
def test_no_names_read_nothing(aws):
    result = run_module("ec2fleet.fleet.alarm_state", {"names": [], "wait_seconds": 0})
    assert result["ok"] is True and result["alarms"] == {} and result["api_calls"] == {}


@pytest.mark.emulator
def test_bad_parameters_fail_in_one_line(aws):
    metric_alarm("web-5xx")
    for args, text in ((({"poll_interval": 0}), "poll_interval must be more than 0 seconds, got 0.0"),
                       ({"wait_seconds": -1}, "wait_seconds must be 0 or more, got -1.0"),
                       ({"names": ["arn:aws:cloudwatch:us-east-1:1:dashboard:x"]}, "not a CloudWatch alarm ARN")):
        result = run_module("ec2fleet.fleet.alarm_state", {"names": ["web-5xx"], **args})
        assert result["failed"] is True and text in result["msg"], result


@pytest.mark.emulator
def test_bake_returns_when_an_alarm_fires_with_the_time_it_fired(aws):
    metric_alarm("web-5xx")
    metric_alarm("web-latency")
    code = ("import time, boto3; time.sleep(6); boto3.client('cloudwatch').set_alarm_state("
            "AlarmName='web-latency', StateValue='ALARM', StateReason='p99 over 1.5 s')")
    _bg, bake = run_tasks([
        {"name": "an alarm fires a little later",
         "ansible.builtin.shell": f"nohup {sys.executable} -c \"{code}\" >/dev/null 2>&1 &", "changed_when": False},
        {"name": "bake", "ec2fleet.fleet.alarm_state": {"names": ["web-5xx", "web-latency"], "wait_seconds": 120,
                                                        "poll_interval": 0.5}},
    ])
    assert bake["firing"] == ["web-latency"], bake
    assert 2 < bake["waited"] < 60 and bake["polls"] > 2
    fired = datetime.fromisoformat(bake["fired_at"])
    assert fired == datetime.fromisoformat(bake["alarms"]["web-latency"]["updated"])
    assert (datetime.now(UTC) - fired).total_seconds() < 60
    assert bake["alarms"]["web-latency"]["reason"] == "p99 over 1.5 s"
    assert bake["api_calls"]["DescribeAlarms"] == bake["polls"]


@pytest.mark.emulator
def test_bake_without_an_alarm_lasts_its_time(aws):
    metric_alarm("web-5xx")
    result = run_module("ec2fleet.fleet.alarm_state", {"names": ["web-5xx"], "wait_seconds": 3, "poll_interval": 1})
    assert result["ok"] is True and result["firing"] == []
    assert 3 <= result["waited"] < 10 and result["polls"] >= 3
    assert result["fired_at"] is None and "watched 3s of 3s" in result["msg"]


class ScriptedAws:
    """DescribeAlarms answers from a script, one state per read; a clock that only sleeps move."""

    where = "region test"

    def __init__(self, states):
        self.states = list(states)
        self.calls = []
        self.now = 0.0

    def call(self, service, operation, action, **kwargs):
        self.calls.append(kwargs)
        state = self.states.pop(0) if len(self.states) > 1 else self.states[0]
        alarm = {"AlarmName": "gate", "StateValue": state, "StateReason": "r",
                 "StateUpdatedTimestamp": datetime.fromtimestamp(1_000 + self.now, tz=UTC)}
        return {"MetricAlarms": [], "CompositeAlarms": [alarm]}

    def sleep(self, seconds):
        self.now += seconds


def test_watch_reads_every_poll_interval_until_one_fires():
    aws = ScriptedAws(["OK", "OK", "OK", "ALARM"])
    reading = alarms.watch(aws, ["gate"], wait_seconds=100, poll_interval=10, clock=lambda: aws.now, sleep=aws.sleep)
    assert reading["polls"] == 4 and reading["waited"] == 30 and reading["firing"] == ["gate"]
    assert reading["fired_at_epoch"] == 1_030
    assert aws.calls[0] == {"AlarmNames": ["gate"], "AlarmTypes": ["MetricAlarm", "CompositeAlarm"], "MaxRecords": 100}


def test_watch_stops_at_the_deadline_and_sleeps_no_longer_than_left():
    aws = ScriptedAws(["OK"])
    reading = alarms.watch(aws, ["gate"], wait_seconds=25, poll_interval=10, clock=lambda: aws.now, sleep=aws.sleep)
    assert reading["ok"] is True and reading["waited"] == 25 and reading["polls"] == 4  # at 0, 10, 20, 25


def test_watch_returns_at_once_for_an_alarm_already_firing_and_for_insufficient_data_when_strict():
    aws = ScriptedAws(["INSUFFICIENT_DATA"])
    lenient = alarms.watch(aws, ["gate"], wait_seconds=30, poll_interval=10, clock=lambda: aws.now, sleep=aws.sleep)
    assert lenient["firing"] == [] and lenient["polls"] == 4
    aws = ScriptedAws(["INSUFFICIENT_DATA"])
    strict = alarms.watch(aws, ["gate"], insufficient_data="alarm", wait_seconds=30, poll_interval=10,
                          clock=lambda: aws.now, sleep=aws.sleep)
    assert strict["firing"] == ["gate"] and strict["polls"] == 1 and strict["waited"] == 0


def test_names_and_arns():
    assert alarms.parse_names(["a", "arn:aws:cloudwatch:eu-west-1:123456789012:alarm:b", "a"]) == ["a", "b"]
    with pytest.raises(DeployError, match="alarm names must be non-empty strings"):
        alarms.parse_names(["a", " "])
    with pytest.raises(DeployError, match="insufficient_data must be one of ok, alarm"):
        alarms.watch(ScriptedAws(["OK"]), ["gate"], insufficient_data="maybe")

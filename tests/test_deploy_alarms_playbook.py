"""playbooks/deploy-alarms.yml against the emulator: every alarm of a tier with its settings, the
scaling policy and the log metric filter; a second run changes nothing; --check changes nothing and
says what it would; tiers from the inventory. Then the stand-in evaluates the alarms the playbook
made and the gate a deploy names goes to ALARM. Plus the tier filter, pure."""

from __future__ import annotations

import json
import math
import time
from datetime import UTC, datetime

import boto3
import pytest
from ansible.errors import AnsibleFilterError
from ansible_collections.ec2fleet.fleet.plugins.filter.alarm_tiers import alarm_tiers
from deploy_support import run_module
from doubles.harness import REPO, run_playbook

from ec2fleet.localfleet.alarms import Evaluator
from ec2fleet.localfleet.world import FleetSpec, World

PLAYBOOK = REPO / "playbooks" / "deploy-alarms.yml"
TG_ARN = "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/prod-web/0123456789abcdef"
LB_ARN = "arn:aws:elasticloadbalancing:us-east-1:123456789012:loadbalancer/app/prod/fedcba9876543210"
DESCRIBED = [{"target_group_arn": TG_ARN, "target_group_name": "prod-web", "load_balancer_arns": [LB_ARN]},
             {"target_group_arn": TG_ARN.replace("prod-web", "prod-api"), "target_group_name": "prod-api",
              "load_balancer_arns": [LB_ARN]}]


def test_tiers_by_name_or_arn_with_their_alarm_names():
    (tier,) = alarm_tiers([{"asg_name": "web", "target_group": "prod-web"}], DESCRIBED, prefix="app-prod-")
    assert tier["name"] == "web" and tier["alarm_prefix"] == "app-prod-web"
    assert tier["dimensions"] == {"TargetGroup": "targetgroup/prod-web/0123456789abcdef",
                                  "LoadBalancer": "app/prod/fedcba9876543210"}
    assert tier["alarms"] == {"target-5xx": "app-prod-web-target-5xx", "target-5xx-rate": "app-prod-web-target-5xx-rate",
                              "unhealthy-hosts": "app-prod-web-unhealthy-hosts", "p99": "app-prod-web-p99",
                              "deploy-gate": "app-prod-web-deploy-gate", "app-errors": "app-prod-app-errors",
                              "cpu": "app-prod-web-cpu"}
    assert tier["scaling_policy"] == "app-prod-web-cpu-target"
    named = alarm_tiers([{"asg_name": "web", "target_group": TG_ARN, "name": "front"}], DESCRIBED)
    assert named[0]["name"] == "front" and named[0]["target_group_name"] == "prod-web"


def test_tiers_from_the_inventory_one_per_group_and_target_group():
    hosts = [{"asg_name": "web", "target_group_arns": [TG_ARN]},
             {"asg_name": "web", "target_group_arns": [TG_ARN, DESCRIBED[1]["target_group_arn"]]},
             {"asg_name": "batch", "target_group_arns": [DESCRIBED[1]["target_group_arn"]]},
             {"asg_name": None, "target_group_arns": [TG_ARN]}]  # outside any group: not a tier
    tiers = alarm_tiers([], DESCRIBED, hosts=hosts)
    assert [(t["name"], t["asg_name"], t["target_group_name"]) for t in tiers] == [
        ("batch", "batch", "prod-api"), ("web-prod-web", "web", "prod-web"), ("web-prod-api", "web", "prod-api")]


@pytest.mark.parametrize(("tiers", "described", "message"), [
    ([{"asg_name": "web"}], DESCRIBED, "each tier needs asg_name and target_group"),
    ([{"asg_name": "web", "target_group": "nope"}], DESCRIBED, "target group nope of group web not found"),
    ([{"asg_name": "web", "target_group": "prod-web"}],
     [{**DESCRIBED[0], "load_balancer_arns": []}], "prod-web is attached to 0 load balancers"),
    ([{"asg_name": "web", "target_group": "prod-web"}, {"asg_name": "api", "target_group": "prod-api", "name": "web"}],
     DESCRIBED, "more than one tier named web"),
])
def test_tier_errors_in_one_line(tiers, described, message):
    with pytest.raises(AnsibleFilterError, match=message):
        alarm_tiers(tiers, described)


# --- against the emulator ---------------------------------------------------------------------------

def fleet(env="staging"):
    """The local fleet's AWS side (VPC, ALB, target group, ASG `web` of 2) and the app's log group."""
    clients = boto3.client
    ids = World(clients, FleetSpec(name="alarms", size=2)).ensure()
    boto3.client("logs").create_log_group(logGroupName=f"/{env}/web/app")
    tg_name = ids["target_group_arn"].split(":targetgroup/")[1].split("/")[0]
    return ids, tg_name


def alarms():
    found = boto3.client("cloudwatch").describe_alarms(AlarmTypes=["MetricAlarm", "CompositeAlarm"])
    return {a["AlarmName"]: a for a in found["MetricAlarms"] + found["CompositeAlarms"]}


def dims(alarm):
    return {d["Name"]: d["Value"] for d in alarm["Dimensions"]}



@pytest.mark.emulator
def test_creates_every_alarm_once_and_a_second_run_changes_nothing(aws):
    ids, tg_name = fleet()
    variables = {"deploy_alarms_env": "staging", "deploy_alarms_tiers": [{"asg_name": "web", "target_group": tg_name}]}
    run = run_playbook(PLAYBOOK, extra_vars=variables)
    assert run.rc == 0, run.output[-4000:]
    found = alarms()
    prefix = "sampleapp-staging-"
    assert set(found) == {f"{prefix}web-{kind}" for kind in ("target-5xx", "target-5xx-rate", "unhealthy-hosts", "p99",
                                                            "deploy-gate", "cpu")} | {f"{prefix}app-errors"}
    tier_dims = {"TargetGroup": ids["target_group_arn"].split(":", 5)[5],
                 "LoadBalancer": ids["load_balancer_arn"].split(":loadbalancer/")[1]}
    errors = found[f"{prefix}web-target-5xx"]
    assert dims(errors) == tier_dims
    assert (errors["MetricName"], errors["Statistic"], errors["Period"], errors["Threshold"],
            errors["ComparisonOperator"], errors["TreatMissingData"]) == \
        ("HTTPCode_Target_5XX_Count", "Sum", 60, 10.0, "GreaterThanThreshold", "notBreaching")
    p99 = found[f"{prefix}web-p99"]
    assert (p99["ExtendedStatistic"], p99["Threshold"], p99["EvaluationPeriods"], p99["DatapointsToAlarm"]) == \
        ("p99", 1.0, 3, 2)
    unhealthy = found[f"{prefix}web-unhealthy-hosts"]
    assert (unhealthy["MetricName"], unhealthy["Statistic"], unhealthy["EvaluationPeriods"]) == \
        ("UnHealthyHostCount", "Maximum", 2)
    rate = found[f"{prefix}web-target-5xx-rate"]
    assert [m["Id"] for m in rate["Metrics"]] == ["errors", "requests", "rate"]
    assert rate["Metrics"][2]["Expression"] == "100 * FILL(errors, 0) / requests"
    assert {d["Name"]: d["Value"] for d in rate["Metrics"][0]["MetricStat"]["Metric"]["Dimensions"]} == tier_dims
    cpu = found[f"{prefix}web-cpu"]
    assert (cpu["Namespace"], dims(cpu), cpu["Period"], cpu["Threshold"]) == \
        ("AWS/EC2", {"AutoScalingGroupName": "web"}, 300, 80.0)
    gate = found[f"{prefix}web-deploy-gate"]
    assert gate["AlarmRule"] == " OR ".join(f'ALARM("{prefix}{kind}")' for kind in (
        "web-target-5xx", "web-target-5xx-rate", "web-unhealthy-hosts", "web-p99", "app-errors"))
    (metric_filter,) = boto3.client("logs").describe_metric_filters(logGroupName="/staging/web/app")["metricFilters"]
    assert metric_filter["filterPattern"] == '"[ERROR]"'
    assert metric_filter["metricTransformations"][0]["metricNamespace"] == "ec2fleet/sampleapp/staging"
    (policy,) = boto3.client("autoscaling").describe_policies(AutoScalingGroupName="web")["ScalingPolicies"]
    assert policy["PolicyName"] == f"{prefix}web-cpu-target" and policy["PolicyType"] == "TargetTrackingScaling"
    assert policy["TargetTrackingConfiguration"]["TargetValue"] == 50.0

    again = run_playbook(PLAYBOOK, extra_vars=variables)
    assert again.rc == 0, again.output[-4000:]
    assert again.recap("localhost")["changed"] == 0, again.output[-4000:]


@pytest.mark.emulator
def test_check_mode_changes_nothing_and_says_what_it_would(aws):
    _ids, tg_name = fleet()
    variables = {"deploy_alarms_env": "staging", "deploy_alarms_tiers": [{"asg_name": "web", "target_group": tg_name}]}
    checked = run_playbook(PLAYBOOK, "--check", "--diff", extra_vars=variables)
    assert checked.rc == 0, checked.output[-4000:]
    assert checked.recap("localhost")["changed"] == 9  # filter, 7 alarms, policy
    assert alarms() == {}
    assert boto3.client("autoscaling").describe_policies(AutoScalingGroupName="web")["ScalingPolicies"] == []
    assert 'ALARM(\\"sampleapp-staging-web-target-5xx\\")' in checked.output or \
        'ALARM("sampleapp-staging-web-target-5xx")' in checked.output  # the gate's rule in the diff

    assert run_playbook(PLAYBOOK, extra_vars=variables).rc == 0
    stricter = {**variables, "deploy_alarms_5xx_rate_percent": 2, "deploy_alarms_cpu_target": 40}
    checked = run_playbook(PLAYBOOK, "--check", "--diff", extra_vars=stricter)
    assert checked.rc == 0 and checked.recap("localhost")["changed"] == 2, checked.output[-4000:]
    assert '"Threshold": 5.0' in checked.output and '"Threshold": 2.0' in checked.output  # before and after
    assert alarms()["sampleapp-staging-web-target-5xx-rate"]["Threshold"] == 5.0
    applied = run_playbook(PLAYBOOK, extra_vars=stricter)
    assert applied.rc == 0 and applied.recap("localhost")["changed"] == 2, applied.output[-4000:]
    assert alarms()["sampleapp-staging-web-target-5xx-rate"]["Threshold"] == 2.0


@pytest.mark.emulator
def test_tiers_and_environment_from_the_inventory(aws, tmp_path):
    ids, _tg_name = fleet(env="qa")
    inventory = tmp_path / "fleet.yml"
    hosts = {f"web-{n}": {"asg_name": "web", "target_group_arns": [ids["target_group_arn"]], "site_env": "qa",
                          "ec2_region": "us-east-1", "site_alarm_period": 10} for n in (1, 2)}
    inventory.write_text(json.dumps({"all": {"children": {"role_web": {"hosts": hosts}}}}))
    run = run_playbook(PLAYBOOK, inventory=str(inventory), extra_vars={"deploy_alarms_scaling_policy": False})
    assert run.rc == 0, run.output[-4000:]
    found = alarms()
    assert "sampleapp-qa-web-deploy-gate" in found and found["sampleapp-qa-web-target-5xx"]["Period"] == 10
    assert boto3.client("autoscaling").describe_policies(AutoScalingGroupName="web")["ScalingPolicies"] == []


@pytest.mark.emulator
def test_missing_log_group_and_unknown_gate_alarm_fail_clearly(aws):
    _ids, tg_name = fleet()
    tiers = [{"asg_name": "web", "target_group": tg_name}]
    run = run_playbook(PLAYBOOK, extra_vars={"deploy_alarms_env": "prod", "deploy_alarms_tiers": tiers})
    assert run.rc != 0 and "log group /prod/web/app not found: run playbooks/cloudwatch_log_groups.yml first" in run.output
    run = run_playbook(PLAYBOOK, extra_vars={"deploy_alarms_env": "staging", "deploy_alarms_tiers": tiers,
                                             "deploy_alarms_gate": ["p99", "latency"]})
    assert run.rc != 0 and "deploy_alarms_gate: latency not an alarm of this playbook" in run.output
    assert alarms() == {}


@pytest.mark.emulator
def test_the_gate_fires_when_the_stand_in_sees_errors(aws):
    """The alarms as made, evaluated by the local fleet's stand-in: a burst of 5xx answers puts the
    tier's gate in ALARM, and alarm_state (what the deploy runs) reads it."""
    ids, tg_name = fleet()
    variables = {"deploy_alarms_env": "staging", "deploy_alarms_period": 10,
                 "deploy_alarms_tiers": [{"asg_name": "web", "target_group": tg_name}]}
    assert run_playbook(PLAYBOOK, extra_vars=variables).rc == 0
    cloudwatch = boto3.client("cloudwatch")
    base = math.floor(time.time() / 60) * 60 - 120
    tier_dims = [{"Name": "TargetGroup", "Value": ids["target_group_arn"].split(":", 5)[5]},
                 {"Name": "LoadBalancer", "Value": ids["load_balancer_arn"].split(":loadbalancer/")[1]}]
    stamp = datetime.fromtimestamp(base, tz=UTC)
    cloudwatch.put_metric_data(Namespace="AWS/ApplicationELB", MetricData=[
        {"MetricName": "RequestCount", "Dimensions": tier_dims, "Timestamp": stamp, "Value": 100},
        {"MetricName": "HTTPCode_Target_5XX_Count", "Dimensions": tier_dims, "Timestamp": stamp, "Value": 40},
    ])
    Evaluator(cloudwatch, clock=lambda: base + 12).evaluate()
    gate = run_module("ec2fleet.fleet.alarm_state", {"names": ["sampleapp-staging-web-deploy-gate"]})
    assert gate["firing"] == ["sampleapp-staging-web-deploy-gate"], gate
    assert "sampleapp-staging-web-target-5xx transitioned to ALARM" in gate["alarms"][
        "sampleapp-staging-web-deploy-gate"]["reason"]

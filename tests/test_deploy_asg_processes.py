"""fleet_asg_processes against the emulator: suspend what a deploy needs, remember what was
suspended before, resume exactly that; check mode; unknown group."""

from __future__ import annotations

import pytest
from deploy_support import client, run_module, run_tasks, web_fleet

pytestmark = pytest.mark.emulator

DEPLOY_PROCESSES = ["AZRebalance", "AlarmNotification", "ReplaceUnhealthy", "ScheduledActions"]


def suspended(name="web"):
    group = client("autoscaling").describe_auto_scaling_groups(AutoScalingGroupNames=[name])["AutoScalingGroups"][0]
    return sorted(p["ProcessName"] for p in group["SuspendedProcesses"])


def test_suspend_then_resume_leaves_operator_suspensions(aws):
    web_fleet(size=1)
    # An operator had suspended ScheduledActions on purpose before the deploy.
    client("autoscaling").suspend_processes(AutoScalingGroupName="web", ScalingProcesses=["ScheduledActions"])
    results = run_tasks([
        {"name": "suspend", "ec2fleet.fleet.asg_processes": {"name": "web"}, "register": "procs"},
        {"name": "suspend again", "ec2fleet.fleet.asg_processes": {"name": "web"}},
        {"name": "resume what we suspended",
         "ec2fleet.fleet.asg_processes": {"name": "web", "state": "resumed", "processes": "{{ procs.suspended_now }}"}},
    ])
    first, again, resume = results
    assert first["changed"] is True
    assert first["previously_suspended"] == ["ScheduledActions"]
    assert first["suspended_now"] == ["AZRebalance", "AlarmNotification", "ReplaceUnhealthy"]
    assert first["suspended"] == DEPLOY_PROCESSES
    assert again["changed"] is False and again["suspended_now"] == []
    assert again["previously_suspended"] == DEPLOY_PROCESSES
    assert resume["changed"] is True
    assert resume["resumed_now"] == ["AZRebalance", "AlarmNotification", "ReplaceUnhealthy"]
    assert suspended() == ["ScheduledActions"]


def test_check_mode_reports_and_changes_nothing(aws):
    web_fleet(size=1)
    result = run_module("ec2fleet.fleet.asg_processes", {"name": "web", "processes": ["AZRebalance", "Launch"]}, check=True)
    assert result["changed"] is True
    assert result["suspended_now"] == ["AZRebalance", "Launch"]
    assert "would have suspended" in result["msg"]
    assert suspended() == []


def test_resume_of_nothing_resumes_nothing(aws):
    """An empty list must not reach AWS: ResumeProcesses with no names resumes every process."""
    web_fleet(size=1)
    client("autoscaling").suspend_processes(AutoScalingGroupName="web", ScalingProcesses=["AZRebalance", "Launch"])
    result = run_module("ec2fleet.fleet.asg_processes", {"name": "web", "state": "resumed", "processes": []})
    assert result["changed"] is False
    assert suspended() == ["AZRebalance", "Launch"]


def test_failures_are_one_clear_line(aws):
    web_fleet(size=1)
    unknown, bad_name, unreachable = run_tasks([
        {"name": "unknown group", "ec2fleet.fleet.asg_processes": {"name": "no-such-asg"}, "ignore_errors": True},
        {"name": "unknown process", "ec2fleet.fleet.asg_processes": {"name": "web", "processes": ["AZRebalancing"]},
         "ignore_errors": True},
        # The common endpoint_url option wins over the environment; a dead endpoint is one line.
        {"name": "dead endpoint", "ec2fleet.fleet.asg_processes": {"name": "web", "endpoint_url": "http://127.0.0.1:9",
                                                          "max_attempts": 1}, "ignore_errors": True},
    ])
    assert unknown["failed"] is True
    assert unknown["msg"] == f"Auto Scaling group 'no-such-asg' not found (region us-east-1, endpoint {aws.endpoint_url})"
    assert bad_name["failed"] is True
    assert "AZRebalancing" in bad_name["msg"] and "processes" in bad_name["msg"]
    assert unreachable["failed"] is True
    assert "unreachable" in unreachable["msg"] and "http://127.0.0.1:9" in unreachable["msg"]
    assert "\n" not in unreachable["msg"]

"""playbooks/codedeploy_register.yml (module ec2fleet.fleet.codedeploy) against the emulator."""

from __future__ import annotations

import json

import boto3
import pytest
from doubles.harness import REPO, run_playbook

pytestmark = pytest.mark.emulator
PLAYBOOK = REPO / "playbooks" / "codedeploy_register.yml"
ROLE_ARN = "arn:aws:iam::123456789012:role/codedeploy-service"


def codedeploy():
    return boto3.client("codedeploy", region_name="us-east-1")


def test_registers_application_and_deployment_group_idempotently(aws, monkeypatch):
    # Instances chosen by EC2 tag here: moto returns autoScalingGroups as [{}] (names dropped), so
    # an ASG-targeted group cannot be read back from the emulator (see the unit test below).
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    variables = {"codedeploy_service_role_arn": ROLE_ARN, "codedeploy_auto_scaling_groups": [],
                 "codedeploy_ec2_tag_filters": [{"key": "role", "value": "web", "type": "KEY_AND_VALUE"}],
                 "codedeploy_deployment_config_name": "CodeDeployDefault.HalfAtATime"}
    run = run_playbook(PLAYBOOK, extra_vars=variables)
    assert run.rc == 0, run.output[-3000:]
    assert run.recap("localhost")["changed"] == 1

    app = codedeploy().get_application(applicationName="sampleapp")["application"]
    assert app["computePlatform"] == "Server"
    group = codedeploy().get_deployment_group(applicationName="sampleapp", deploymentGroupName="web")["deploymentGroupInfo"]
    assert group["serviceRoleArn"] == ROLE_ARN
    assert group["deploymentConfigName"] == "CodeDeployDefault.HalfAtATime"
    assert group["ec2TagFilters"] == [{"Key": "role", "Value": "web", "Type": "KEY_AND_VALUE"}]
    assert group["autoRollbackConfiguration"] == {"enabled": True, "events": ["DEPLOYMENT_FAILURE"]}
    assert group["deploymentStyle"] == {"deploymentType": "IN_PLACE", "deploymentOption": "WITHOUT_TRAFFIC_CONTROL"}

    again = run_playbook(PLAYBOOK, extra_vars=variables)
    assert again.rc == 0, again.output[-3000:]
    assert again.recap("localhost")["changed"] == 0


def test_check_mode_registers_nothing(aws, monkeypatch):
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    run = run_playbook(PLAYBOOK, "--check", extra_vars={"codedeploy_service_role_arn": ROLE_ARN})
    assert run.rc == 0, run.output[-3000:]
    assert run.recap("localhost")["changed"] == 1
    assert codedeploy().list_applications()["applications"] == []


def test_changed_setting_is_detected(aws, monkeypatch):
    # An existing group that differs is updated with UpdateDeploymentGroup; moto lacks that call,
    # so against the emulator the module must at least try it (and say what differs) in check mode.
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    base = {"codedeploy_service_role_arn": ROLE_ARN, "codedeploy_auto_scaling_groups": []}
    assert run_playbook(PLAYBOOK, extra_vars=base).rc == 0
    run = run_playbook(PLAYBOOK, "--check", "-v",
                       extra_vars={**base, "codedeploy_deployment_config_name": "CodeDeployDefault.AllAtOnce"})
    assert run.rc == 0, run.output[-3000:]
    assert run.recap("localhost")["changed"] == 1
    assert "update deployment group sampleapp/web: deploymentConfigName" in run.output


def test_missing_service_role_fails_clearly(aws, monkeypatch):
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    run = run_playbook(PLAYBOOK)
    assert run.rc != 0
    assert "codedeploy_service_role_arn" in run.output
    assert codedeploy().list_applications()["applications"] == []


def test_desired_group_and_difference_detection():
    # The module's comparison with the shape real AWS returns (ASGs as {"name", "hook"} objects).
    from ansible_collections.ec2fleet.fleet.plugins.modules import codedeploy as module

    desired = module.desired_group({
        "deployment_config_name": "CodeDeployDefault.OneAtATime", "service_role_arn": ROLE_ARN,
        "auto_scaling_groups": ["web"], "ec2_tag_filters": [{"key": "role", "value": "web"}],
        "target_group_names": ["web-tg"], "with_traffic_control": True,
        "auto_rollback_events": [], "outdated_instances_strategy": "IGNORE",
    })
    current = dict(desired, autoScalingGroups=[{"name": "web", "hook": "CodeDeploy-managed"}],
                   ec2TagFilters=[{"Key": "role", "Value": "web", "Type": "KEY_AND_VALUE"}])
    assert module.differences(current, desired) == []
    assert module.differences(dict(current, deploymentConfigName="CodeDeployDefault.AllAtOnce"), desired) == [
        "deploymentConfigName"]
    assert desired["deploymentStyle"]["deploymentOption"] == "WITH_TRAFFIC_CONTROL"
    assert desired["autoRollbackConfiguration"] == {"enabled": False, "events": []}


def test_instance_profile_policy_grants_what_the_agent_calls(aws):
    text = (REPO / "roles" / "codedeploy_agent" / "files" / "iam-policy.json").read_text()
    policy = json.loads(text)
    allowed = {(action, statement["Resource"]) for statement in policy["Statement"] if statement["Effect"] == "Allow"
               for action in statement["Action"]}
    actions = {action for action, _ in allowed}
    # The agent's command channel (checked by IAM when :enable_auth_policy: is on).
    assert {f"codedeploy-commands-secure:{name}" for name in
            ("GetDeploymentSpecification", "PollHostCommand", "PutHostCommandAcknowledgement",
             "PutHostCommandComplete")} <= actions
    # Releases come from the role's own package bucket pattern; no write to S3 at all.
    assert ("s3:GetObject", "arn:aws:s3:::aws-codedeploy-*/*") in allowed
    assert not {a for a in actions if a.startswith("s3:") and not a.startswith("s3:Get")}
    defaults = (REPO / "roles" / "codedeploy_agent" / "defaults" / "main.yml").read_text()
    assert "https://aws-codedeploy-{{ codedeploy_agent_region }}" in defaults
    created = boto3.client("iam").create_policy(PolicyName="codedeploy-agent", PolicyDocument=text)
    assert created["Policy"]["PolicyName"] == "codedeploy-agent"

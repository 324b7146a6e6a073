"""playbooks/cloudwatch_log_groups.yml against the emulator: log groups, retention, KMS key."""

from __future__ import annotations

import boto3
import pytest
from doubles.harness import REPO, run_playbook

pytestmark = pytest.mark.emulator
PLAYBOOK = REPO / "playbooks" / "cloudwatch_log_groups.yml"
WEB = {"nginx-access", "nginx-error", "app", "auth", "syslog"}
BASTION = {"auth", "syslog", "bastion-sessions"}


def log_groups(prefix: str) -> dict[str, dict]:
    logs = boto3.client("logs", region_name="us-east-1")
    pages = logs.get_paginator("describe_log_groups").paginate(logGroupNamePrefix=prefix)
    return {group["logGroupName"]: group for page in pages for group in page["logGroups"]}


def test_creates_every_role_log_group_with_retention_and_kms_key(aws):
    key_arn = boto3.client("kms", region_name="us-east-1").create_key()["KeyMetadata"]["Arn"]
    variables = {"cloudwatch_agent_env": "production", "cloudwatch_agent_log_retention_days": 90,
                 "cloudwatch_agent_log_group_kms_key_id": key_arn, "cloudwatch_agent_region": "us-east-1"}
    run = run_playbook(PLAYBOOK, extra_vars=variables)
    assert run.rc == 0, run.output[-3000:]

    groups = log_groups("/production/")
    expected = {f"/production/web/{name}" for name in WEB} | {f"/production/bastion/{name}" for name in BASTION}
    assert set(groups) == expected
    assert {group.get("retentionInDays") for group in groups.values()} == {90}
    assert {group.get("kmsKeyId") for group in groups.values()} == {key_arn}

    again = run_playbook(PLAYBOOK, extra_vars=variables)
    assert again.rc == 0, again.output[-3000:]
    assert again.recap("localhost")["changed"] == 0


def test_retention_change_is_applied_to_existing_groups(aws):
    base = {"cloudwatch_agent_env": "staging", "cloudwatch_agent_region": "us-east-1"}
    assert run_playbook(PLAYBOOK, extra_vars={**base, "cloudwatch_agent_log_retention_days": 7}).rc == 0
    run = run_playbook(PLAYBOOK, extra_vars={**base, "cloudwatch_agent_log_retention_days": 14})
    assert run.rc == 0, run.output[-3000:]
    assert {group.get("retentionInDays") for group in log_groups("/staging/").values()} == {14}


def test_invalid_retention_fails_and_creates_nothing(aws):
    run = run_playbook(PLAYBOOK, extra_vars={"cloudwatch_agent_env": "qa", "cloudwatch_agent_log_retention_days": 42,
                                             "cloudwatch_agent_region": "us-east-1"})
    assert run.rc != 0
    assert "cloudwatch_agent_log_retention_days" in run.output
    assert log_groups("/qa/") == {}

"""cloudwatch_agent: the configuration the role renders, checked against the agent's own schema.

The role renders on the controller (tasks_from render-config, the same tasks tasks/main.yml runs
first) and validates with fleet_json_schema; these tests take the rendered document and check it
independently with jsonschema against the reference copy of the agent's schema.
"""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
from doubles.harness import REPO, run_playbook

REFERENCE_SCHEMA = Path("/work/shared/reference/cloudwatch-agent/schema.json")
ROLE_SCHEMA = REPO / "roles" / "cloudwatch_agent" / "files" / "schema.json"
IAM_POLICY = REPO / "roles" / "cloudwatch_agent" / "files" / "iam-policy.json"

RENDER = """
- hosts: localhost
  gather_facts: true
  tasks:
    - ansible.builtin.include_role:
        name: ec2fleet.fleet.cloudwatch_agent
        tasks_from: render-config
    - ansible.builtin.copy:
        content: "{{{{ __cloudwatch_agent_config | to_nice_json }}}}"
        dest: {out}
        mode: "0600"
"""


def schema() -> dict:
    return json.loads(ROLE_SCHEMA.read_text())


def render(tmp_path: Path, variables: dict):
    out = tmp_path / "rendered.json"
    playbook = tmp_path / "render.yml"
    playbook.write_text(RENDER.format(out=out))
    run = run_playbook(playbook, extra_vars=variables)
    return run, (json.loads(out.read_text()) if out.exists() else None)


def groups(config: dict) -> dict[str, dict]:
    collected = config["logs"]["logs_collected"]
    return {entry["log_group_name"]: entry
            for section in collected.values() for entry in section["collect_list"]}


def test_role_ships_the_agent_schema_unchanged():
    if REFERENCE_SCHEMA.exists():
        assert ROLE_SCHEMA.read_bytes() == REFERENCE_SCHEMA.read_bytes()
    assert schema()["$schema"].startswith("http://json-schema.org/draft-04/")


VARIABLE_SETS = {
    "web-defaults": (
        {"cloudwatch_agent_env": "production"},
        {"/production/web/nginx-access", "/production/web/nginx-error", "/production/web/app",
         "/production/web/auth", "/production/web/syslog"},
    ),
    "bastion": (
        {"cloudwatch_agent_env": "staging", "cloudwatch_agent_role_name": "bastion",
         "cloudwatch_agent_log_retention_days": 365},
        {"/staging/bastion/auth", "/staging/bastion/syslog", "/staging/bastion/bastion-sessions"},
    ),
    "web-app-file-extra-log": (
        {"cloudwatch_agent_env": "dev", "cloudwatch_agent_app_log_source": "file",
         "cloudwatch_agent_collect_syslog": False, "cloudwatch_agent_log_timezone": "Local",
         "cloudwatch_agent_extra_logs": [{"file_path": "/var/log/dpkg.log", "log_group_name": "/dev/web/dpkg",
                                          "timestamp_format": "%Y-%m-%d %H:%M:%S"}]},
        {"/dev/web/nginx-access", "/dev/web/nginx-error", "/dev/web/app", "/dev/web/auth", "/dev/web/dpkg"},
    ),
}


@pytest.mark.parametrize("name", sorted(VARIABLE_SETS))
def test_rendered_configs_validate_against_the_agent_schema(tmp_path, name):
    variables, expected_groups = VARIABLE_SETS[name]
    run, config = render(tmp_path, variables)
    assert run.rc == 0, run.output[-3000:]
    jsonschema.Draft4Validator(schema()).validate(config)
    assert set(groups(config)) == expected_groups
    retention = variables.get("cloudwatch_agent_log_retention_days", 30)
    assert {entry["retention_in_days"] for entry in groups(config).values()} == {retention}
    assert {entry["log_stream_name"] for entry in groups(config).values()} == {"{instance_id}"}
    metrics = config["metrics"]
    assert metrics["append_dimensions"]["AutoScalingGroupName"] == "${aws:AutoScalingGroupName}"
    assert ["AutoScalingGroupName"] in metrics["aggregation_dimensions"]
    assert set(metrics["metrics_collected"]) == {"mem", "disk", "swap"}


def test_app_journal_or_file_and_timestamp_formats(tmp_path):
    run, config = render(tmp_path, {"cloudwatch_agent_env": "prod"})
    assert run.rc == 0, run.output[-3000:]
    journal = config["logs"]["logs_collected"]["journald"]["collect_list"]
    assert journal[0]["units"] == ["sampleapp.service"]
    by_group = groups(config)
    assert by_group["/prod/web/nginx-access"]["timestamp_format"] == "%d/%b/%Y:%H:%M:%S %z"
    assert by_group["/prod/web/nginx-error"]["timestamp_format"] == "%Y/%m/%d %H:%M:%S"

    run, config = render(tmp_path, {"cloudwatch_agent_env": "prod", "cloudwatch_agent_app_log_source": "file"})
    assert run.rc == 0, run.output[-3000:]
    assert "journald" not in config["logs"]["logs_collected"]
    assert groups(config)["/prod/web/app"]["file_path"] == "/var/log/sampleapp/sampleapp.log"


def test_bastion_session_log_read_from_the_journal_by_the_bastion_tag(tmp_path):
    run, config = render(tmp_path, {"cloudwatch_agent_role_name": "bastion", "bastion_session_log_tag": "jump"})
    assert run.rc == 0, run.output[-3000:]
    journal = config["logs"]["logs_collected"]["journald"]["collect_list"]
    assert journal == [{"log_group_name": "/dev/bastion/bastion-sessions", "log_stream_name": "{instance_id}",
                        "retention_in_days": 30, "matches": [{"SYSLOG_IDENTIFIER": "jump"}]}]
    assert "nginx-access" not in json.dumps(config)


def test_invalid_retention_is_rejected_with_a_clear_message(tmp_path):
    run, config = render(tmp_path, {"cloudwatch_agent_log_retention_days": 42})
    assert run.rc != 0
    assert config is None
    assert "cloudwatch_agent_log_retention_days" in run.output
    assert "42" in run.output


def test_schema_violation_is_rejected_before_anything_is_written(tmp_path):
    # Passes the role's argument spec (a list of dicts) but not the agent's schema.
    run, config = render(tmp_path, {"cloudwatch_agent_extra_logs": [
        {"file_path": "/var/log/x.log", "log_group_name": "/dev/web/x", "timezone": "PST"}]})
    assert run.rc != 0
    assert config is None
    assert "does not match" in run.output and "timezone" in run.output and "PST" in run.output


def test_agent_schema_itself_rejects_an_unsupported_retention():
    # What the role validates against is strict enough to catch the example value.
    bad = {"logs": {"logs_collected": {"files": {"collect_list": [{"file_path": "/x", "retention_in_days": 42}]}}}}
    errors = list(jsonschema.Draft4Validator(schema()).iter_errors(bad))
    assert errors and "42" in errors[0].message


def test_iam_policy_is_valid_json_with_the_needed_actions():
    policy = json.loads(IAM_POLICY.read_text())
    assert policy["Version"] == "2012-10-17"
    actions = {action for statement in policy["Statement"] if statement["Effect"] == "Allow"
               for action in statement["Action"]}
    needed = {"cloudwatch:PutMetricData", "ec2:DescribeTags", "ec2:DescribeVolumes", "logs:CreateLogStream",
              "logs:PutLogEvents", "logs:DescribeLogStreams", "logs:CreateLogGroup", "logs:PutRetentionPolicy"}
    assert needed <= actions
    # The metric namespace condition matches the role's default namespace.
    defaults = (REPO / "roles" / "cloudwatch_agent" / "defaults" / "main.yml").read_text()
    namespaces = {s.get("Condition", {}).get("StringEquals", {}).get("cloudwatch:namespace")
                  for s in policy["Statement"] if "cloudwatch:PutMetricData" in s["Action"]}
    assert namespaces == {"CWAgent"} and "cloudwatch_agent_metrics_namespace: CWAgent" in defaults


@pytest.mark.emulator
def test_iam_policy_is_accepted_by_the_iam_api(aws):
    import boto3

    iam = boto3.client("iam")
    created = iam.create_policy(PolicyName="cloudwatch-agent", PolicyDocument=IAM_POLICY.read_text())
    assert created["Policy"]["PolicyName"] == "cloudwatch-agent"

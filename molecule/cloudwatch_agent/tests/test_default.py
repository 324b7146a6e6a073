"""The CloudWatch agent (TEST DOUBLE package) installed, configured, enabled and running."""

import json

SOURCE = "/etc/amazon-cloudwatch-agent/amazon-cloudwatch-agent.json"
LOADED = "/opt/aws/amazon-cloudwatch-agent/etc/amazon-cloudwatch-agent.d/file_amazon-cloudwatch-agent.json"


def test_pinned_test_double_package_installed(host):
    pkg = host.package("amazon-cloudwatch-agent")
    assert pkg.is_installed
    assert pkg.version == "1.300099.0b1"
    description = host.check_output("dpkg-query --showformat='${Description}' --show amazon-cloudwatch-agent")
    assert description.startswith("TEST DOUBLE")


def test_source_config_rendered_from_role_variables(host):
    config = json.loads(host.file(SOURCE).content_string)
    files = config["logs"]["logs_collected"]["files"]["collect_list"]
    groups = {entry["log_group_name"] for entry in files}
    assert {"/staging/web/nginx-access", "/staging/web/nginx-error", "/staging/web/auth", "/staging/web/syslog"} <= groups
    assert all(entry["retention_in_days"] == 14 and entry["log_stream_name"] == "{instance_id}" for entry in files)
    journal = config["logs"]["logs_collected"]["journald"]["collect_list"]
    assert journal == [{"log_group_name": "/staging/web/app", "log_stream_name": "{instance_id}",
                        "retention_in_days": 14, "units": ["sampleapp.service"]}]
    metrics = config["metrics"]
    assert metrics["append_dimensions"]["AutoScalingGroupName"] == "${aws:AutoScalingGroupName}"
    assert {"mem", "disk", "swap"} <= set(metrics["metrics_collected"])


def test_source_kept_outside_agent_directory_and_loaded(host):
    # fetch-config copied the source into the agent's .d directory and translated it.
    assert host.file(SOURCE).exists
    assert host.file(LOADED).content_string == host.file(SOURCE).content_string
    status = json.loads(host.check_output("/opt/aws/amazon-cloudwatch-agent/bin/amazon-cloudwatch-agent-ctl -a status"))
    assert status["configstatus"] == "configured"
    assert status["status"] == "running"


def test_service_enabled_and_running(host):
    service = host.service("amazon-cloudwatch-agent")
    assert service.is_enabled
    assert service.is_running


def test_signature_material_kept_for_audit(host):
    cache = "/var/cache/amazon-cloudwatch-agent"
    arch = host.check_output("dpkg --print-architecture")
    assert host.file(f"{cache}/amazon-cloudwatch-agent_1.300099.0b1_{arch}.deb.sig").exists
    assert host.file(cache).mode == 0o700

"""The CodeDeploy agent (TEST DOUBLE package) installed, configured, enabled and running."""

import json

CONFIG = "/etc/codedeploy-agent/conf/codedeployagent.yml"


def test_ruby_and_pinned_test_double_installed(host):
    assert host.package("ruby").is_installed
    pkg = host.package("codedeploy-agent")
    assert pkg.is_installed
    assert pkg.version == "1.7.1-110"
    description = host.check_output("dpkg-query --showformat='${Description}' --show codedeploy-agent")
    assert description.startswith("TEST DOUBLE")


def test_config_templated_and_read_by_ruby(host):
    # Parse it the way the agent does (Ruby YAML, :symbol keys).
    dump = host.check_output(
        "ruby -ryaml -rjson -e 'puts JSON.generate(YAML.safe_load(File.read(ARGV[0]), permitted_classes: [Symbol]))' "
        + CONFIG
    )
    config = json.loads(dump)
    assert config["proxy_uri"] == "http://proxy.internal:3128"
    assert config["max_revisions"] == 3
    assert config["disable_imds_v1"] is True
    assert config["log_dir"] == "/var/log/aws/codedeploy-agent/"
    assert host.file(CONFIG).mode == 0o644


def test_service_enabled_and_running_with_role_config(host):
    service = host.service("codedeploy-agent")
    assert service.is_enabled
    assert service.is_running
    status = host.run("/opt/codedeploy-agent/bin/codedeploy-agent status")
    assert status.rc == 0 and "running as PID" in status.stdout
    # The running agent started with the templated settings, not the package defaults.
    log = host.file("/var/log/aws/codedeploy-agent/codedeploy-agent.log").content_string.splitlines()
    assert "max_revisions=3" in log[-1] and "IMDSv2 only" in log[-1] and "proxy.internal" in log[-1]

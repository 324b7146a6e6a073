"""What all deploy modules share: DOCUMENTATION that ansible-doc renders and that matches each
module's argument spec, the same common AWS options everywhere, boto3 only through fleet_aws."""

from __future__ import annotations

import ast
import subprocess
import sys

import pytest
import yaml

from deploy_support import REPO, import_plugin

MODULES = ["fleet_deploy_lock", "fleet_asg_processes", "fleet_asg_standby", "fleet_target_wait"]
# Every module that calls AWS documents its connection options through the one fragment.
AWS_MODULES = [*MODULES, "fleet_sg_audit"]


def _docstrings(path, names):
    found = {}
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name):
            if node.targets[0].id in names:
                found[node.targets[0].id] = yaml.safe_load(node.value.value)
    return found


def doc_of(name):
    """The module's documentation with its fragments' options merged in, as ansible-doc shows it."""
    found = _docstrings(REPO / "plugins" / "modules" / f"{name}.py", ("DOCUMENTATION", "EXAMPLES", "RETURN"))
    for fragment in found["DOCUMENTATION"].get("extends_documentation_fragment", []):
        extra = _docstrings(REPO / "plugins" / "doc_fragments" / f"{fragment}.py", ("DOCUMENTATION",))
        found["DOCUMENTATION"]["options"].update(extra["DOCUMENTATION"]["options"])
    return found


def spec_of(name):
    return import_plugin(f"plugins/modules/{name}.py", f"{name}_spec_under_test").ARGUMENT_SPEC


@pytest.mark.parametrize("name", AWS_MODULES)
def test_ansible_doc_renders(name):
    out = subprocess.run([str(REPO / ".venv" / "bin" / "ansible-doc"), "-M", "plugins/modules", name],
                         cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "ERROR" not in out.stderr and "EXAMPLES:" in out.stdout and "RETURN VALUES:" in out.stdout


@pytest.mark.parametrize("name", MODULES)
def test_documentation_matches_the_argument_spec(name):
    docs = doc_of(name)
    options = docs["DOCUMENTATION"]["options"]
    spec = spec_of(name)
    assert sorted(options) == sorted(spec)
    for option, rule in spec.items():
        doc = options[option]
        assert doc.get("type", "str") == rule.get("type", "str"), option
        assert doc.get("default") == rule.get("default"), option
        assert doc.get("required", False) == rule.get("required", False), option
        assert sorted(doc.get("choices") or []) == sorted(rule.get("choices") or []), option
        assert doc.get("aliases", []) == rule.get("aliases", []), option
        assert doc.get("elements") == rule.get("elements"), option
        assert doc.get("description"), option
    assert isinstance(docs["EXAMPLES"], list) and docs["RETURN"]


@pytest.mark.parametrize("name", MODULES)
def test_common_aws_options_are_the_shared_ones(name):
    spec = spec_of(name)  # importing the module imports its module_utils
    utils = sys.modules["ansible.module_utils.fleet_aws"]
    for option, rule in utils.AWS_ARGUMENT_SPEC.items():
        assert spec[option] == rule, option


@pytest.mark.parametrize("name", AWS_MODULES)
def test_aws_options_documented_once_in_the_fragment(name):
    docs = _docstrings(REPO / "plugins" / "modules" / f"{name}.py", ("DOCUMENTATION",))["DOCUMENTATION"]
    assert docs.get("extends_documentation_fragment") == ["fleet_aws"]
    assert not {"region", "profile", "endpoint_url"} & set(docs["options"])
    fragment = doc_of(name)["DOCUMENTATION"]["options"]
    utils_spec = import_plugin("plugins/module_utils/fleet_aws.py", "fleet_aws_fragment_check").AWS_ARGUMENT_SPEC
    for option, rule in utils_spec.items():
        assert fragment[option]["type"] == rule["type"], option
        assert fragment[option].get("default") == rule.get("default"), option
        assert fragment[option].get("aliases", []) == rule.get("aliases", []), option
        assert sorted(fragment[option].get("choices") or []) == sorted(rule.get("choices") or []), option


@pytest.mark.parametrize("name", MODULES)
def test_clients_only_through_fleet_aws(name):
    source = (REPO / "plugins" / "modules" / f"{name}.py").read_text()
    assert "import boto3" not in source and "boto3.client" not in source
    assert "fleet_clients" not in source or "from ansible.module_utils.fleet_aws" in source
    utils = (REPO / "plugins" / "module_utils" / "fleet_deploy.py").read_text()
    assert "import boto3" not in utils and "fleet_clients(" in utils


def test_access_denied_becomes_one_clear_line(aws):
    """The emulator does not enforce IAM, so botocore's Stubber (a test double for just that
    missing piece) answers AccessDenied; the shared code must turn it into one line."""
    from botocore.stub import Stubber

    spec_of(MODULES[0])
    utils = sys.modules["ansible.module_utils.fleet_deploy"]
    aws_access = utils.Aws({"region": "eu-west-1"})
    autoscaling = aws_access.client("autoscaling")
    with Stubber(autoscaling) as stub:
        stub.add_client_error("describe_auto_scaling_groups", service_error_code="AccessDenied",
                              service_message="User: arn:aws:iam::123456789012:user/ci is not authorized to "
                                              "perform: autoscaling:DescribeAutoScalingGroups", http_status_code=403)
        with pytest.raises(utils.DeployError) as failure:
            utils.describe_asg(aws_access, "web")
    assert str(failure.value) == (
        f"cannot describe Auto Scaling group web (region eu-west-1, endpoint {aws.endpoint_url}): access denied "
        "(AccessDenied: User: arn:aws:iam::123456789012:user/ci is not authorized to perform: "
        "autoscaling:DescribeAutoScalingGroups)")


@pytest.mark.parametrize("name", MODULES)
def test_examples_are_a_valid_playbook(name, tmp_path):
    """The EXAMPLES tasks pass ansible-playbook --syntax-check (module found, arguments parse)."""
    play = [{"hosts": "localhost", "gather_facts": False, "tasks": doc_of(name)["EXAMPLES"]}]
    path = tmp_path / "examples.yml"
    path.write_text(yaml.safe_dump(play))
    out = subprocess.run([str(REPO / ".venv" / "bin" / "ansible-playbook"), "--syntax-check", str(path)],
                         cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr

"""What all AWS modules share: DOCUMENTATION that ansible-doc renders and that matches each
module's argument spec, the same common AWS options everywhere (documented once, in the
ec2fleet.fleet.aws fragment), boto3 only through the collection's client layer."""

from __future__ import annotations

import ast
import importlib
import subprocess

import pytest
import yaml
from ansible_collections.ec2fleet.fleet.plugins.module_utils import aws as client_layer
from ansible_collections.ec2fleet.fleet.plugins.module_utils import deploy as deploy_utils
from deploy_support import REPO

MODULES = ["deploy_lock", "deploy_checkpoint", "asg_processes", "asg_standby", "service_state", "target_wait",
           "lb_metrics"]
# Every module that calls AWS (meta/runtime.yml's action group) documents its connection
# options through the one fragment.
AWS_MODULES = yaml.safe_load((REPO / "meta" / "runtime.yml").read_text())["action_groups"]["aws"]


def _docstrings(path, names):
    found = {}
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name) and node.targets[0].id in names:
            found[node.targets[0].id] = yaml.safe_load(node.value.value)
    return found


def doc_of(name):
    """The module's documentation with its fragments' options merged in, as ansible-doc shows it."""
    found = _docstrings(REPO / "plugins" / "modules" / f"{name}.py", ("DOCUMENTATION", "EXAMPLES", "RETURN"))
    for fragment in found["DOCUMENTATION"].get("extends_documentation_fragment", []):
        _ns, _coll, file, *attribute = fragment.split(".")
        attr = (attribute[0].upper() if attribute else "DOCUMENTATION")
        extra = _docstrings(REPO / "plugins" / "doc_fragments" / f"{file}.py", (attr,))
        found["DOCUMENTATION"].setdefault("options", {}).update(extra[attr]["options"])
    return found


def spec_of(name):
    return importlib.import_module(f"ansible_collections.ec2fleet.fleet.plugins.modules.{name}").ARGUMENT_SPEC


@pytest.mark.parametrize("name", AWS_MODULES)
def test_ansible_doc_renders(name):
    out = subprocess.run([str(REPO / ".venv" / "bin" / "ansible-doc"), f"ec2fleet.fleet.{name}"],
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
    spec = spec_of(name)
    for option, rule in client_layer.AWS_ARGUMENT_SPEC.items():
        assert spec[option] == rule, option


@pytest.mark.parametrize("name", AWS_MODULES)
def test_aws_options_documented_once_in_the_fragment(name):
    docs = _docstrings(REPO / "plugins" / "modules" / f"{name}.py", ("DOCUMENTATION",))["DOCUMENTATION"]
    assert docs.get("extends_documentation_fragment") == ["ec2fleet.fleet.aws", "ec2fleet.fleet.aws.retries"]
    assert not {"region", "profile", "endpoint_url", "retry_mode", "max_attempts"} & set(docs.get("options") or {})
    fragment = doc_of(name)["DOCUMENTATION"]["options"]
    for option, rule in client_layer.AWS_ARGUMENT_SPEC.items():
        assert fragment[option]["type"] == rule["type"], option
        assert fragment[option].get("default") == rule.get("default"), option
        assert fragment[option].get("aliases", []) == rule.get("aliases", []), option
        assert sorted(fragment[option].get("choices") or []) == sorted(rule.get("choices") or []), option


@pytest.mark.parametrize("name", AWS_MODULES)
def test_calls_only_through_the_one_wrapper(name):
    source = (REPO / "plugins" / "modules" / f"{name}.py").read_text()
    assert "import boto3" not in source and "boto3.client" not in source and "fleet_clients" not in source
    assert "AwsCalls(" in source
    for utils in ("deploy.py", "deploy_html.py", "service.py"):
        text = (REPO / "plugins" / "module_utils" / utils).read_text()
        assert "import boto3" not in text and "fleet_clients(" not in text


def test_the_inventory_plugin_takes_the_same_retry_options():
    """One retry policy and one set of defaults: the plugin's options come from the same fragment."""
    docs = _docstrings(REPO / "plugins" / "inventory" / "ec2_fleet.py", ("DOCUMENTATION",))["DOCUMENTATION"]
    assert "ec2fleet.fleet.aws.retries" in docs["extends_documentation_fragment"]
    assert not {"retry_mode", "max_attempts"} & set(docs["options"])
    retries = _docstrings(REPO / "plugins" / "doc_fragments" / "aws.py", ("RETRIES",))["RETRIES"]["options"]
    for option in ("retry_mode", "max_attempts"):
        assert retries[option]["default"] == client_layer.AWS_ARGUMENT_SPEC[option]["default"]
    assert retries["retry_mode"]["choices"] == list(client_layer.RETRY_MODES)


def test_access_denied_becomes_one_clear_line(aws):
    """The emulator does not enforce IAM, so botocore's Stubber (a test double for just that
    missing piece) answers AccessDenied; the shared code must turn it into one line."""
    from botocore.stub import Stubber

    utils = deploy_utils
    aws_access = client_layer.AwsCalls({"region": "eu-west-1"})
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

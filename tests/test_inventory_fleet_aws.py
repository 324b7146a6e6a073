"""plugins/module_utils/aws.py: the one boto3 client factory (region, profile, assume role,
endpoint override, retries) and its one-line error messages."""

from __future__ import annotations

import subprocess
import sys

import botocore.exceptions
import pytest
from ansible_collections.ec2fleet.fleet.plugins.module_utils import aws as fleet_aws

from ec2fleet.emulator import free_port


def test_endpoint_from_argument_then_environment(monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:1111")
    assert fleet_aws.endpoint_from_env() == "http://127.0.0.1:1111"
    assert fleet_aws.endpoint_from_env("http://127.0.0.1:2222") == "http://127.0.0.1:2222"
    monkeypatch.delenv("AWS_ENDPOINT_URL")
    assert fleet_aws.endpoint_from_env() is None


@pytest.mark.parametrize("mode", ["standard", "adaptive"])
def test_clients_carry_retry_policy_region_and_endpoint(aws, mode):
    _, clients = fleet_aws.fleet_clients(region="eu-west-1", retry_mode=mode, max_attempts=7)
    ec2 = clients("ec2")
    assert ec2.meta.region_name == "eu-west-1"
    assert ec2.meta.endpoint_url == aws.endpoint_url
    assert ec2.meta.config.retries == {"mode": mode, "total_max_attempts": 7}
    assert clients("ec2") is ec2  # one client per (service, region)
    assert clients("ec2", "us-west-2").meta.region_name == "us-west-2"
    assert clients("ec2").describe_regions()["Regions"]


def test_bad_retry_mode_is_one_clear_error():
    with pytest.raises(fleet_aws.FleetAWSError, match="retry_mode must be one of standard, adaptive, legacy"):
        fleet_aws.client_config(retry_mode="eager")


def test_assume_role_returns_a_session_with_temporary_credentials(aws):
    session, clients = fleet_aws.fleet_clients(region="us-east-1", assume_role_arn="arn:aws:iam::123456789012:role/ops")
    creds = session.get_credentials().get_frozen_credentials()
    assert creds.access_key != "testing" and creds.token
    assert clients("sts").get_caller_identity()["Arn"].startswith("arn:aws:sts::123456789012:assumed-role/ops/")


def test_assume_role_failure_is_one_line(aws):
    with pytest.raises(fleet_aws.FleetAWSError) as err:
        fleet_aws.fleet_clients(region="us-east-1", assume_role_arn="arn:aws:iam::123456789012:role/ops",
                                endpoint_url=f"http://127.0.0.1:{free_port()}", max_attempts=1)
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith("cannot assume role arn:aws:iam::123456789012:role/ops (region us-east-1, endpoint http://127.0.0.1:")
    assert "unreachable" in message


def test_unknown_profile(aws):
    with pytest.raises(fleet_aws.FleetAWSError, match="AWS profile 'ghost' not found"):
        fleet_aws.fleet_clients(profile="ghost")


def client_error(code, message="details"):
    return botocore.exceptions.ClientError({"Error": {"Code": code, "Message": message}}, "DescribeInstances")


@pytest.mark.parametrize(
    ("exc", "kind", "text"),
    [
        (botocore.exceptions.NoCredentialsError(), "no_credentials", "no AWS credentials found"),
        (botocore.exceptions.EndpointConnectionError(endpoint_url="http://127.0.0.1:9"), "unreachable",
         "AWS endpoint http://127.0.0.1:9 unreachable"),
        (client_error("UnauthorizedOperation", "You are not\nauthorized"), "access_denied",
         "access denied (UnauthorizedOperation: You are not authorized)"),
        (client_error("AccessDenied"), "access_denied", "access denied (AccessDenied: details)"),
        (client_error("AuthFailure"), "bad_credentials", "AWS rejected the credentials"),
        (client_error("OptInRequired"), "region_disabled", "region not enabled for this account"),
        (client_error("RequestLimitExceeded"), "throttled", "RequestLimitExceeded: details"),
        (client_error("InvalidParameterValue"), "other", "InvalidParameterValue: details"),
    ],
)
def test_error_kinds_and_one_line_messages(exc, kind, text):
    assert fleet_aws.error_kind(exc) == kind
    message = fleet_aws.format_aws_error(exc, action="describe instances", where="region eu-west-1")
    assert message.startswith("cannot describe instances (region eu-west-1): ")
    assert text in message and "\n" not in message


def test_module_imports_only_stdlib_and_boto():
    """It is shipped inside module payloads: no import of the controller's ansible code."""
    code = (
        "import sys\n"
        "import ansible_collections.ec2fleet.fleet.plugins.module_utils.aws\n"
        "print(any(name == 'ansible' or name.startswith('ansible.') for name in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_region_defaults_to_aws_region_as_documented(monkeypatch):
    """botocore reads AWS_DEFAULT_REGION only; the documented default is AWS_REGION too."""
    monkeypatch.delenv("AWS_DEFAULT_REGION", raising=False)
    monkeypatch.setenv("AWS_REGION", "eu-west-3")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/dev/null")
    _, clients = fleet_aws.fleet_clients()
    assert clients.region == "eu-west-3"
    monkeypatch.setenv("AWS_DEFAULT_REGION", "ap-south-1")
    _, clients = fleet_aws.fleet_clients()
    assert clients.region == "ap-south-1"
    assert fleet_aws.fleet_clients(region="us-west-2")[1].region == "us-west-2"

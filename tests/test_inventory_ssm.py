"""ec2_fleet's connection modes and SSM hostvars against the emulator: the ssm ProxyCommand (its
exact form, its quoting through Ansible's split, the ops tools' parser and a real ssh, the account's
profile or assumed role carried to the program it runs), auto/direct/bastion and the per-host tag,
and the SSM agent hostvars from one paginated sweep per (account, region).

Where no Session Manager exists, the program of the ProxyCommand is a recorder (the inventory's
ssm_proxy_command option): it writes the arguments and AWS credentials it was started with, which
is everything the real AWS CLI would act on."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import textwrap
from pathlib import Path

import boto3
import botocore.config
import botocore.exceptions
import inventory_fleet as fleet
import pytest
from ansible.errors import AnsibleError
from inventory_support import (
    REPO,
    CallCounter,
    DenyingEndpoint,
    SsmInstanceInformation,
    hostvars,
    parse_inventory,
    recording_program,
    ssh_through,
    write_config,
)

from ec2fleet import ops

pytestmark = pytest.mark.emulator

REGION = "us-east-1"
SEARCH = "222222222222"
HELPER = REPO / "plugins" / "module_utils" / "ssm_session.py"
START = "ssm start-session --target %h --document-name AWS-StartSSHSession --parameters portNumber=%p"


def config(**options):
    return {"plugin": "ec2fleet.fleet.ec2_fleet", "regions": [REGION], **options}


@pytest.fixture
def vpcs(aws):
    """VPC a with a bastion, a private app, a public edge host and tagged hosts; VPC c with none."""
    a = fleet.make_network(REGION, cidr="10.1.0.0/16")
    c = fleet.make_network(REGION, cidr="10.3.0.0/16")
    fleet.add_bastion(a, "bastion-a")
    fleet.run_instances(REGION, a.private_subnets[0], tags={"Name": "app-a"})
    fleet.run_instances(REGION, a.public_subnets[0], tags={"Name": "edge-a"}, public=True)
    fleet.run_instances(REGION, a.private_subnets[0], tags={"Name": "ssm-a", "ec2fleet:connection": "ssm"})
    fleet.run_instances(REGION, c.private_subnets[0], tags={"Name": "app-c"})
    fleet.run_instances(REGION, c.private_subnets[0], tags={"Name": "direct-c", "ec2fleet:connection": "Direct"})
    fleet.run_instances(REGION, c.private_subnets[0], tags={"Name": "odd-c", "ec2fleet:connection": "carrier-pigeon"})
    return a, c


def test_ssm_mode_addresses_every_host_by_instance_id(vpcs, tmp_path):
    cache = {"cache": True, "cache_plugin": "jsonfile", "cache_connection": str(tmp_path / "cache")}
    inventory, _ = parse_inventory(write_config(tmp_path, config(connection_mode="ssm", connection_mode_tag="", **cache)))
    expected = f'-o ProxyCommand="aws {START} --region {REGION}"'
    for name, host in inventory.hosts.items():
        hv = host.vars
        assert hv["ec2_connection_mode"] == "ssm", name
        assert hv["ansible_host"] == hv["ec2_instance_id"], name
        assert hv["ansible_ssh_common_args"] == expected, name  # the bastion too: no inbound SSH anywhere
    warm, _ = parse_inventory(write_config(tmp_path, config(connection_mode="ssm", connection_mode_tag="", **cache)))
    assert {n: h.vars for n, h in warm.hosts.items()} == {n: hostvars(inventory, n) for n in inventory.hosts}


def test_auto_mode_and_the_per_host_tag(vpcs, tmp_path):
    inventory, plugin = parse_inventory(write_config(tmp_path, config(connection_mode="auto")))
    modes = {name: host.vars["ec2_connection_mode"] for name, host in inventory.hosts.items()}
    assert modes == {"bastion-a": "bastion", "app-a": "bastion", "edge-a": "bastion", "ssm-a": "ssm",
                     "app-c": "ssm", "direct-c": "direct", "odd-c": "ssm"}
    bastion_ip = hostvars(inventory, "bastion-a")["ec2_public_ip_address"]
    assert hostvars(inventory, "bastion-a")["ansible_host"] == bastion_ip
    app_a = hostvars(inventory, "app-a")
    hop = f'-o ProxyCommand="ssh -W %h:%p -o StrictHostKeyChecking=yes {bastion_ip}"'
    assert (app_a["ansible_host"], app_a["ansible_ssh_common_args"]) == (app_a["ec2_private_ip_address"], hop)
    edge = hostvars(inventory, "edge-a")
    assert edge["ansible_host"] == edge["ec2_public_ip_address"] and "ansible_ssh_common_args" not in edge
    for name in ("ssm-a", "app-c", "odd-c"):
        hv = hostvars(inventory, name)
        assert hv["ansible_host"] == hv["ec2_instance_id"] and "ProxyCommand=" in hv["ansible_ssh_common_args"]
    direct = hostvars(inventory, "direct-c")
    assert direct["ansible_host"] == direct["ec2_private_ip_address"] and "ansible_ssh_common_args" not in direct
    assert [w for w in plugin._warnings if "odd-c" in w] == [
        "ec2_fleet: host odd-c: tag ec2fleet:connection='carrier-pigeon' is not a connection mode "
        "(bastion, ssm, direct, auto); using connection_mode=auto"]

    # The default mode is today's bastion wiring; the tag still overrides it...
    inventory, _ = parse_inventory(write_config(tmp_path, config(), name="default"))
    assert hostvars(inventory, "app-c")["ec2_connection_mode"] == "bastion"
    assert "ansible_ssh_common_args" not in hostvars(inventory, "app-c")
    assert hostvars(inventory, "ssm-a")["ec2_connection_mode"] == "ssm"
    # ...unless the override is off, or read from another tag.
    inventory, _ = parse_inventory(write_config(tmp_path, config(connection_mode_tag=""), name="notag"))
    assert hostvars(inventory, "ssm-a")["ansible_ssh_common_args"] == hop
    inventory, _ = parse_inventory(write_config(tmp_path, config(connection_mode="direct", connection_mode_tag="Name"), name="direct"))
    assert not any("ansible_ssh_common_args" in h.vars for h in inventory.hosts.values())
    assert {h.vars["ec2_connection_mode"] for h in inventory.hosts.values()} == {"direct"}


@pytest.fixture
def recorder(tmp_path):
    """A stand-in for the AWS CLI: records its arguments and the AWS credentials in its environment."""
    return recording_program(tmp_path / "aws-recorder")


def test_ssm_proxycommand_carries_the_account_profile_or_role(aws, tmp_path, recorder, monkeypatch):
    credentials = tmp_path / "credentials"
    credentials.write_text("[shared]\naws_access_key_id = testing\naws_secret_access_key = testing\n")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(credentials))
    fleet.one_host(None, "eu-west-1", "shared-1")
    fleet.one_host(SEARCH, REGION, "search-1")
    accounts = [{"alias": "shared", "profile": "shared", "regions": ["eu-west-1"]},
                {"alias": "search", "assume_role_arn": fleet.role_arn(SEARCH), "role_session_name": "ops-ssh"}]
    inventory, _ = parse_inventory(write_config(tmp_path, config(
        accounts=accounts, connection_mode="ssm", ssm_proxy_command=str(recorder))))
    record = tmp_path / "record.json"

    # A profile: the CLI gets it, and resolves it itself.
    shared_hv = hostvars(inventory, "shared-1")
    assert shared_hv["ansible_ssh_common_args"] == f'-o ProxyCommand="{recorder} {START} --region eu-west-1 --profile shared"'
    seen = ssh_through(shared_hv, record)
    assert seen["argv"] == ["ssm", "start-session", "--target", shared_hv["ec2_instance_id"], "--document-name",
                            "AWS-StartSSHSession", "--parameters", "portNumber=22", "--region", "eu-west-1",
                            "--profile", "shared"]

    # An assumed role: the helper assumes it and hands the CLI the role's credentials, in its
    # environment only (never in the command line, the hostvars or the cache).
    search_hv = hostvars(inventory, "search-1")
    common = search_hv["ansible_ssh_common_args"]
    words = shlex.split(shlex.split(common)[1].split("=", 1)[1])  # what ssh's shell runs
    assert words[0] == sys.executable and Path(words[1]).resolve() == HELPER.resolve()
    assert words[2:words.index("--")] == ["--role-arn", fleet.role_arn(SEARCH), "--region", REGION, "--role-session-name",
                                          "ops-ssh", "--endpoint-url", os.environ["AWS_ENDPOINT_URL"]]
    assert common.endswith(f' -- {recorder} {START} --region {REGION}"')
    seen = ssh_through(search_hv, record, env={"AWS_PROFILE": "shared"})
    assert seen["argv"] == ["ssm", "start-session", "--target", search_hv["ec2_instance_id"], "--document-name",
                            "AWS-StartSSHSession", "--parameters", "portNumber=22", "--region", REGION]
    env = seen["env"]
    assert env["AWS_PROFILE"] is None and env["AWS_REGION"] == REGION and env["AWS_ACCESS_KEY_ID"] != "testing"
    assert env["AWS_SECRET_ACCESS_KEY"] not in common
    identity = boto3.client("sts", aws_access_key_id=env["AWS_ACCESS_KEY_ID"], aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
                            aws_session_token=env["AWS_SESSION_TOKEN"]).get_caller_identity()
    assert identity["Account"] == SEARCH and "/ops-ssh" in identity["Arn"]

    # The ops tools (tools/fleet ssh|run|logs) give OpenSSH the same ProxyCommand, whole, for the instance id.
    argv = ops.SshSession(ops.Host("search-1", search_hv)).argv()
    proxy = shlex.split(common)[1]  # ProxyCommand=<the whole command>
    assert proxy.startswith("ProxyCommand=") and argv[argv.index(proxy) - 1] == "-o"
    assert argv[-1] == search_hv["ec2_instance_id"]


def test_helper_failure_is_one_line_and_runs_outside_the_collection(aws, tmp_path):
    """Run by its path where ansible_collections is not importable (an installed collection), the
    helper uses the client layer beside it; a role it cannot assume is one line on stderr."""
    runner = textwrap.dedent(f"""\
        import runpy, sys
        sys.modules["ansible_collections.ec2fleet"] = None  # not importable, as outside Ansible
        sys.path.insert(0, {str(HELPER.parent)!r})  # what running a script by its path does
        sys.argv = [{str(HELPER)!r}, *sys.argv[1:]]
        runpy.run_path({str(HELPER)!r}, run_name="__main__")
        """)
    base = [sys.executable, "-c", runner, "--role-arn", fleet.role_arn(SEARCH), "--region", REGION]
    proc = subprocess.run([*base, "--", sys.executable, "-c", "import os; print(os.environ['AWS_ACCESS_KEY_ID'])"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() not in ("", "testing")
    proc = subprocess.run([*base, "--profile", "ghost", "--", "true"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 255
    assert proc.stderr == "ec2fleet ssm_session: AWS profile 'ghost' not found in the shared config/credentials files\n"


def test_moto_has_no_describe_instance_information(aws):
    """Why SsmInstanceInformation stands in: moto's server fails this call. When this test fails,
    moto answers it: drop the stand-in and register instances in moto instead."""
    with pytest.raises(botocore.exceptions.ClientError, match=r"\(500\)"):
        boto3.client("ssm", region_name=REGION, config=botocore.config.Config(retries={"total_max_attempts": 1})
                     ).describe_instance_information()


def test_ssm_hostvars_from_one_sweep_per_account_and_region(aws, tmp_path, monkeypatch):
    ids = {}
    for account, region, name in (("111111111111", REGION, "p1"), ("111111111111", REGION, "p2"),
                                  ("111111111111", "eu-west-1", "p3"), (SEARCH, REGION, "s1"), (SEARCH, REGION, "s2")):
        ids[name] = fleet.one_host(account, region, name)
    accounts = [{"alias": "payments", "assume_role_arn": fleet.role_arn("111111111111"), "regions": [REGION, "eu-west-1"]},
                {"alias": "search", "assume_role_arn": fleet.role_arn(SEARCH)}]
    with SsmInstanceInformation(os.environ["AWS_ENDPOINT_URL"], page_size=2) as ssm:
        ssm.register(REGION, ids["p1"])
        ssm.register(REGION, ids["p2"], ping="ConnectionLost", agent="3.2.0.0")
        ssm.register(REGION, ids["s1"], platform=("Linux", "Ubuntu", "24.04"))
        ssm.register(REGION, "i-00000000000000001")  # managed, not in the inventory
        ssm.register(REGION, "i-00000000000000002")
        ssm.register("eu-west-1", ids["p3"], ping="Inactive")
        counter = CallCounter(monkeypatch)
        inventory, _ = parse_inventory(write_config(tmp_path, config(accounts=accounts, endpoint_url=ssm.url, ssm_hostvars=True)))
        p1, p2, p3 = (hostvars(inventory, n) for n in ("p1", "p2", "p3"))
        assert (p1["ssm_ping_status"], p1["ssm_agent_version"], p1["ssm_platform_type"], p1["ssm_platform_name"],
                p1["ssm_platform_version"]) == ("Online", "3.3.40.0", "Linux", "Debian GNU/Linux", "12")
        assert (p2["ssm_ping_status"], p2["ssm_agent_version"]) == ("ConnectionLost", "3.2.0.0")
        assert p3["ssm_ping_status"] == "Inactive"
        assert hostvars(inventory, "s1")["ssm_platform_name"] == "Ubuntu"
        # Not managed by SSM: the hostvars are there, null.
        assert {k: v for k, v in hostvars(inventory, "s2").items() if k.startswith("ssm_")} == dict.fromkeys(
            ("ssm_ping_status", "ssm_agent_version", "ssm_platform_type", "ssm_platform_name", "ssm_platform_version"))
        # One sweep per (account, region), paginated: us-east-1 holds 5 managed instances (3 pages of 2).
        pairs = {(key, region) for key, region in ssm.requests}
        assert len(pairs) == 3 and sorted(region for _, region in pairs) == ["eu-west-1", REGION, REGION]
        assert len(ssm.requests) == 3 + 3 + 1
        assert counter.calls.count("DescribeInstanceInformation") == 7

        ssm.requests.clear()
        inventory, _ = parse_inventory(write_config(tmp_path, config(accounts=accounts, endpoint_url=ssm.url), name="off"))
        assert ssm.requests == [] and not any(k.startswith("ssm_") for k in hostvars(inventory, "p1"))


def test_ssm_hostvars_denied(aws, tmp_path):
    fleet.one_host(None, REGION, "app")
    with DenyingEndpoint(os.environ["AWS_ENDPOINT_URL"], ["ssm"]) as deny:
        options = {"endpoint_url": deny.url, "ssm_hostvars": True}
        with pytest.raises(AnsibleError, match=r"^ec2_fleet: cannot query EC2 inventory .*access denied \(AccessDeniedException"):
            parse_inventory(write_config(tmp_path, config(**options)))
        inventory, plugin = parse_inventory(write_config(tmp_path, config(strict_permissions=False, **options), name="lax"))
    assert hostvars(inventory, "app")["ssm_ping_status"] is None
    assert any("cannot describe SSM managed instances" in w and "strict_permissions=false" in w for w in plugin._warnings)


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({"connection_mode": "tunnel"}, "option connection_mode has invalid value(s) tunnel; allowed values are: bastion, ssm, direct, auto"),
        ({"ssm_proxy_command": 'aws --profile "x"'}, "option ssm_proxy_command must be a program (and its options) without double quotes"),
        ({"ssm_proxy_command": " "}, "option ssm_proxy_command must be a program"),
        ({"ssm_hostvars": "yes"}, "option ssm_hostvars must be true or false"),
    ],
)
def test_bad_connection_options(aws, tmp_path, options, expected):
    with pytest.raises(AnsibleError) as err:
        parse_inventory(write_config(tmp_path, config(**options)))
    assert expected in str(err.value)


def test_values_a_proxycommand_cannot_carry_are_refused(aws, tmp_path, monkeypatch):
    fleet.one_host(None, REGION, "app")
    credentials = tmp_path / "credentials"
    credentials.write_text('[we"ird]\naws_access_key_id = testing\naws_secret_access_key = testing\n')
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(credentials))
    with pytest.raises(AnsibleError, match=r"^ec2_fleet: cannot wire SSM connections: profile must not contain double quotes"):
        parse_inventory(write_config(tmp_path, config(profile='we"ird', connection_mode="ssm")))

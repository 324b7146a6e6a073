"""playbooks/bastion_security_groups.yml against the emulator: the real playbook (ansible-playbook
subprocess, default controller inventory) audits a bastion/private security-group layout with
known faults, reports each one by group and rule, fixes them in enforce mode, and a second audit
is clean."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import boto3
import pytest

REPO = Path(__file__).resolve().parent.parent
PLAYBOOK = REPO / "playbooks" / "bastion_security_groups.yml"
ADMIN_OK = "203.0.113.0/24"
ADMIN_MISSING = "198.51.100.0/24"

pytestmark = pytest.mark.emulator


def run_playbook(*extra, check=False):
    env = dict(os.environ, ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0")
    cmd = ["ansible-playbook", str(PLAYBOOK), "-e", json.dumps({"bastion_sg_admin_cidrs": [ADMIN_OK, ADMIN_MISSING]}),
           *extra]
    if check:
        cmd.append("--check")
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


def ssh_from_cidr(cidr, port=22):
    return {"IpProtocol": "tcp", "FromPort": port, "ToPort": port, "IpRanges": [{"CidrIp": cidr}]}


@pytest.fixture
def layout(aws):
    """A bastion and two private hosts whose security groups break the rules in known ways."""
    ec2 = boto3.client("ec2")
    vpc = ec2.create_vpc(CidrBlock="10.20.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.20.1.0/24")["Subnet"]["SubnetId"]

    def group(name):
        return ec2.create_security_group(GroupName=name, Description=name, VpcId=vpc)["GroupId"]

    bastion, web, db = group("bastion-sg"), group("web-sg"), group("db-sg")
    ec2.authorize_security_group_ingress(GroupId=bastion, IpPermissions=[
        ssh_from_cidr(ADMIN_OK),
        ssh_from_cidr("0.0.0.0/0"),                                                   # SSH from anywhere
        {"IpProtocol": "tcp", "FromPort": 80, "ToPort": 80, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]},  # not SSH
    ])
    ec2.authorize_security_group_ingress(GroupId=web, IpPermissions=[
        {"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22, "UserIdGroupPairs": [{"GroupId": bastion}]},
        ssh_from_cidr("10.20.0.0/16"),                                               # SSH around the bastion
        {"IpProtocol": "tcp", "FromPort": 80, "ToPort": 80, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]},  # fine
    ])
    ec2.authorize_security_group_ingress(GroupId=db, IpPermissions=[
        {"IpProtocol": "tcp", "FromPort": 0, "ToPort": 65535, "IpRanges": [{"CidrIp": "10.20.0.0/16"}]},  # covers 22
    ])
    image = ec2.describe_images()["Images"][0]["ImageId"]

    def instance(role, group_id):
        ec2.run_instances(ImageId=image, MinCount=1, MaxCount=1, InstanceType="t3.micro", SubnetId=subnet,
                          SecurityGroupIds=[group_id],
                          TagSpecifications=[{"ResourceType": "instance", "Tags": [{"Key": "Role", "Value": role}]}])

    instance("bastion", bastion)
    instance("web", web)
    instance("db", db)
    return {"ec2": ec2, "bastion": bastion, "web": web, "db": db}


def ingress(ec2, group_id):
    """The group's ingress as a set of (protocol, from, to, source) tuples."""
    rules = set()
    for perm in ec2.describe_security_groups(GroupIds=[group_id])["SecurityGroups"][0]["IpPermissions"]:
        key = (perm["IpProtocol"], perm.get("FromPort"), perm.get("ToPort"))
        rules.update((*key, r["CidrIp"]) for r in perm.get("IpRanges", []))
        rules.update((*key, p["GroupId"]) for p in perm.get("UserIdGroupPairs", []))
    return rules


def test_audit_reports_each_violation_by_group_and_rule(layout):
    before = {name: ingress(layout["ec2"], layout[name]) for name in ("bastion", "web", "db")}
    result = run_playbook()
    out = result.stdout
    assert result.returncode == 2, out + result.stderr
    b, w, d = layout["bastion"], layout["web"], layout["db"]
    expected = [
        f"VIOLATION bastion group {b} (bastion-sg): tcp 22-22 from 0.0.0.0/0: SSH open to 0.0.0.0/0",
        f"VIOLATION bastion group {b} (bastion-sg): tcp 80-80 from 0.0.0.0/0: the bastion accepts nothing but SSH",
        f"VIOLATION bastion group {b} (bastion-sg): tcp 22-22 from {ADMIN_MISSING}: missing",
        f"VIOLATION private group {w} (web-sg): tcp 22-22 from 10.20.0.0/16: SSH to a private host must come only",
        f"VIOLATION private group {d} (db-sg): tcp 0-65535 from 10.20.0.0/16: SSH to a private host must come only",
        f"VIOLATION private group {d} (db-sg): tcp 22-22 from group {b}: missing",
    ]
    flat = " ".join(out.split())
    for line in expected:
        assert line in flat, f"{line!r} not reported:\n{out}"
    assert "6 violation(s) found" in flat
    # Allowed rules are not reported, and an audit changes nothing.
    assert f"from {ADMIN_OK}:" not in flat
    assert "tcp 80-80 from 0.0.0.0/0: SSH to a private" not in flat
    assert {name: ingress(layout["ec2"], layout[name]) for name in ("bastion", "web", "db")} == before


def test_enforce_check_mode_changes_nothing(layout):
    before = {name: ingress(layout["ec2"], layout[name]) for name in ("bastion", "web", "db")}
    result = run_playbook("-e", "bastion_sg_enforce=true", check=True)
    assert "6 violation(s) found" in " ".join(result.stdout.split()), result.stdout
    assert {name: ingress(layout["ec2"], layout[name]) for name in ("bastion", "web", "db")} == before


def test_enforce_fixes_violations_and_a_new_audit_is_clean(layout):
    ec2, b = layout["ec2"], layout["bastion"]
    result = run_playbook("-e", "bastion_sg_enforce=true")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 remaining" in " ".join(result.stdout.split())

    assert ingress(ec2, b) == {("tcp", 22, 22, ADMIN_OK), ("tcp", 22, 22, ADMIN_MISSING)}
    assert ingress(ec2, layout["web"]) == {("tcp", 22, 22, b), ("tcp", 80, 80, "0.0.0.0/0")}
    assert ingress(ec2, layout["db"]) == {("tcp", 22, 22, b)}

    again = run_playbook()
    assert again.returncode == 0, again.stdout + again.stderr
    assert "0 violation(s) found" in " ".join(again.stdout.split())


def test_missing_admin_cidrs_fail_clearly(aws):
    result = subprocess.run(["ansible-playbook", str(PLAYBOOK)], cwd=REPO, capture_output=True, text=True,
                            env=dict(os.environ, ANSIBLE_NOCOLOR="1"), timeout=300)
    assert result.returncode != 0
    assert "bastion_sg_admin_cidrs must be a non-empty list" in " ".join(result.stdout.split())

"""The emulator's constant-time tag lookup (ec2fleet/moto_server.py) answers exactly what moto's
own scan answers: tags inside DescribeInstances/DescribeVpcs/... (the patched path) equal
DescribeTags for the same resource (moto's unpatched scan)."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from types import SimpleNamespace

import boto3
import pytest
from inventory_fleet import AMI

from ec2fleet import moto_server

pytestmark = pytest.mark.emulator


def scanned_tags(ec2, resource_id):
    tags = ec2.describe_tags(Filters=[{"Name": "resource-id", "Values": [resource_id]}])["Tags"]
    return [(t["Key"], t["Value"]) for t in tags]


def listed(tags):
    return [(t["Key"], t["Value"]) for t in tags or []]


def test_tags_in_describe_answers_equal_moto_scan(aws):
    ec2 = boto3.client("ec2")
    vpc = ec2.create_vpc(CidrBlock="10.7.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.7.1.0/24")["Subnet"]["SubnetId"]
    group = ec2.create_security_group(GroupName="web", Description="web", VpcId=vpc)["GroupId"]
    ids = [i["InstanceId"] for i in ec2.run_instances(ImageId=AMI, MinCount=3, MaxCount=3, SubnetId=subnet)["Instances"]]
    # Overlapping keys across resources, a tag removed again, one instance left untagged.
    ec2.create_tags(Resources=[vpc, subnet, group, ids[0], ids[1]],
                    Tags=[{"Key": "Env", "Value": "prod"}, {"Key": "Role", "Value": "web"}])
    ec2.create_tags(Resources=[ids[0]], Tags=[{"Key": "Name", "Value": "web-1"}, {"Key": "a:b", "Value": ""}])
    ec2.delete_tags(Resources=[ids[1]], Tags=[{"Key": "Role"}])

    instances = {i["InstanceId"]: i for r in ec2.describe_instances(InstanceIds=ids)["Reservations"]
                 for i in r["Instances"]}
    for instance_id in ids:
        assert listed(instances[instance_id].get("Tags")) == scanned_tags(ec2, instance_id)
    assert listed(instances[ids[0]]["Tags"]) == [("Env", "prod"), ("Role", "web"), ("Name", "web-1"), ("a:b", "")]
    assert listed(instances[ids[2]].get("Tags")) == []
    assert listed(ec2.describe_vpcs(VpcIds=[vpc])["Vpcs"][0]["Tags"]) == scanned_tags(ec2, vpc)
    assert listed(ec2.describe_subnets(SubnetIds=[subnet])["Subnets"][0]["Tags"]) == scanned_tags(ec2, subnet)
    assert listed(ec2.describe_security_groups(GroupIds=[group])["SecurityGroups"][0]["Tags"]) == scanned_tags(ec2, group)
    # A tag filter (moto evaluates it through the same lookup) still selects by tag.
    tagged = ec2.describe_instances(Filters=[{"Name": "tag:Role", "Values": ["web"]}])["Reservations"]
    assert {i["InstanceId"] for r in tagged for i in r["Instances"]} == {ids[0]}


def test_harness_runs_the_patched_server(aws):
    cmdline = Path(f"/proc/{aws.pid}/cmdline").read_bytes().split(b"\0")
    assert b"ec2fleet.moto_server" in cmdline


def test_lookup_of_an_untagged_resource_adds_nothing(monkeypatch):
    from moto.ec2.models.core import TaggedEC2Resource

    monkeypatch.setattr(TaggedEC2Resource, "get_tags", TaggedEC2Resource.get_tags)  # restored afterwards
    moto_server.install_tag_index()

    backend = SimpleNamespace(tags=defaultdict(dict))
    backend.tags["i-0123456789abcdef0"] = {"Name": "a"}

    def lookup(resource_id):
        return TaggedEC2Resource.get_tags(SimpleNamespace(ec2_backend=backend, id=resource_id))

    assert lookup("i-0123456789abcdef0") == [
        {"resource_id": "i-0123456789abcdef0", "key": "Name", "value": "a", "resource_type": "instance"}]
    assert lookup("i-00000000000000000") == []
    assert list(backend.tags) == ["i-0123456789abcdef0"]

"""Builds emulated EC2 fleets in moto for the inventory tests and the benchmark.

A fleet per region: one VPC with a public and a private subnet per AZ, a bastion with a public
address in the public subnet, and Auto Scaling Groups (launch template, tags Role/Env propagated
at launch) in the private subnets. Every instance then gets a unique ``Name`` tag.

moto keeps one backend per account and answers AssumeRole with credentials of the role's account:
``with in_account("111122223333"):`` builds in that account (the process's credentials are the
role's until the block ends).
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field

import boto3

AMI = "ami-12c6146b"  # an image moto ships in every region


@dataclass
class RegionFleet:
    region: str
    vpc_id: str
    public_subnets: list = field(default_factory=list)
    private_subnets: list = field(default_factory=list)
    bastion_ids: list = field(default_factory=list)
    asgs: dict = field(default_factory=dict)  # name -> [instance ids]
    names: dict = field(default_factory=dict)  # instance id -> Name tag


def role_arn(account_id, name="fleet-read"):
    return f"arn:aws:iam::{account_id}:role/{name}"


@contextlib.contextmanager
def in_account(account_id, endpoint_url=None):
    """Every boto3 client created in the block acts in ``account_id`` (through an assumed role)."""
    names = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")
    before = {name: os.environ.get(name) for name in names}
    creds = boto3.client("sts", endpoint_url=endpoint_url).assume_role(
        RoleArn=role_arn(account_id, "fleet-builder"), RoleSessionName="fleet-builder")["Credentials"]
    os.environ.update(zip(names, (creds["AccessKeyId"], creds["SecretAccessKey"], creds["SessionToken"]), strict=True))
    # boto3's default session keeps the credentials it first found: a new one reads these.
    boto3.DEFAULT_SESSION = None
    try:
        yield
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        boto3.DEFAULT_SESSION = None


def _client(service, region, endpoint_url=None):
    return boto3.client(service, region_name=region, endpoint_url=endpoint_url)


def make_network(region, cidr="10.0.0.0/16", endpoint_url=None, azs=2):
    ec2 = _client("ec2", region, endpoint_url)
    vpc_id = ec2.create_vpc(CidrBlock=cidr)["Vpc"]["VpcId"]
    zones = [z["ZoneName"] for z in ec2.describe_availability_zones()["AvailabilityZones"]][:azs]
    base = cidr.split(".")
    fleet = RegionFleet(region=region, vpc_id=vpc_id)
    for i, zone in enumerate(zones):
        public = ec2.create_subnet(VpcId=vpc_id, CidrBlock=f"{base[0]}.{base[1]}.{i}.0/24", AvailabilityZone=zone)
        ec2.modify_subnet_attribute(SubnetId=public["Subnet"]["SubnetId"], MapPublicIpOnLaunch={"Value": True})
        private = ec2.create_subnet(
            VpcId=vpc_id, CidrBlock=f"{base[0]}.{base[1]}.{16 * (i + 1)}.0/20", AvailabilityZone=zone
        )
        fleet.public_subnets.append(public["Subnet"]["SubnetId"])
        fleet.private_subnets.append(private["Subnet"]["SubnetId"])
    return fleet


def run_instances(region, subnet_id, count=1, tags=None, public=False, endpoint_url=None, instance_type="t3.micro"):
    ec2 = _client("ec2", region, endpoint_url)
    kwargs = dict(ImageId=AMI, MinCount=count, MaxCount=count, InstanceType=instance_type)
    if public:
        kwargs["NetworkInterfaces"] = [
            {"DeviceIndex": 0, "SubnetId": subnet_id, "AssociatePublicIpAddress": True}
        ]
    else:
        kwargs["NetworkInterfaces"] = [
            {"DeviceIndex": 0, "SubnetId": subnet_id, "AssociatePublicIpAddress": False}
        ]
    if tags:
        kwargs["TagSpecifications"] = [
            {"ResourceType": "instance", "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}
        ]
    return [i["InstanceId"] for i in ec2.run_instances(**kwargs)["Instances"]]


def one_host(account_id, region, name, tags=None, cidr="10.0.0.0/16"):
    """A network and one instance named ``name`` in ``region`` of ``account_id`` (None: the
    account of the current credentials); returns the instance id."""
    with in_account(account_id) if account_id else contextlib.nullcontext():
        net = make_network(region, cidr=cidr)
        return run_instances(region, net.private_subnets[0], tags={"Name": name, **(tags or {})})[0]


def add_bastion(fleet, name, endpoint_url=None, tag_key="Role", tag_value="bastion", env="prod"):
    ids = run_instances(
        fleet.region, fleet.public_subnets[0], tags={"Name": name, tag_key: tag_value, "Env": env},
        public=True, endpoint_url=endpoint_url,
    )
    fleet.bastion_ids.extend(ids)
    fleet.names[ids[0]] = name
    return ids[0]


def add_asg(fleet, name, size, role="web", env="prod", endpoint_url=None, target_group_arns=None,
            protected=False):
    ec2 = _client("ec2", fleet.region, endpoint_url)
    autoscaling = _client("autoscaling", fleet.region, endpoint_url)
    lt = ec2.create_launch_template(
        LaunchTemplateName=f"lt-{name}",
        LaunchTemplateData={"ImageId": AMI, "InstanceType": "t3.micro"},
    )["LaunchTemplate"]
    kwargs = dict(
        AutoScalingGroupName=name,
        LaunchTemplate={"LaunchTemplateId": lt["LaunchTemplateId"], "Version": "$Latest"},
        MinSize=0, MaxSize=max(size, 1), DesiredCapacity=size,
        VPCZoneIdentifier=",".join(fleet.private_subnets),
        NewInstancesProtectedFromScaleIn=protected,
        Tags=[
            {"Key": "Role", "Value": role, "PropagateAtLaunch": True},
            {"Key": "Env", "Value": env, "PropagateAtLaunch": True},
        ],
    )
    if target_group_arns:
        kwargs["TargetGroupARNs"] = target_group_arns
    autoscaling.create_auto_scaling_group(**kwargs)
    group = autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[name])["AutoScalingGroups"][0]
    ids = sorted(i["InstanceId"] for i in group["Instances"])
    fleet.asgs[name] = ids
    return ids


def name_instances(fleet, ids, prefix, endpoint_url=None):
    """Unique Name tags, one call per instance (EC2 tags one value per call)."""
    ec2 = _client("ec2", fleet.region, endpoint_url)
    for n, instance_id in enumerate(ids, 1):
        name = f"{prefix}-{n:04d}"
        ec2.create_tags(Resources=[instance_id], Tags=[{"Key": "Name", "Value": name}])
        fleet.names[instance_id] = name


def build_fleet(regions, per_region, asgs_per_region=2, endpoint_url=None, env="prod", prefix=""):
    """A fleet of ``per_region`` instances per region: 1 bastion + ASGs sharing the rest.
    ``prefix`` starts every name (bastion, ASG, instance): fleets of several accounts stay apart."""
    fleets = []
    for r, region in enumerate(regions):
        fleet = make_network(region, cidr=f"10.{r}.0.0/16", endpoint_url=endpoint_url)
        short = prefix + "".join(part[0] for part in region.split("-")[:2]) + region.split("-")[-1]
        add_bastion(fleet, f"bastion-{short}", endpoint_url=endpoint_url, env=env)
        remaining = per_region - 1
        for a in range(asgs_per_region):
            size = remaining // (asgs_per_region - a)
            remaining -= size
            name = f"web-{short}-{a}"
            ids = add_asg(fleet, name, size, role="web" if a % 2 == 0 else "worker", env=env,
                          endpoint_url=endpoint_url)
            name_instances(fleet, ids, name, endpoint_url=endpoint_url)
        fleets.append(fleet)
    return fleets

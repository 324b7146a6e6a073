"""The emulated AWS side of the local fleet: a production-shaped VPC in the moto server.

What it creates (idempotently, looked up by tags before anything is made):
- a VPC with one public subnet (bastion) and private subnets in three AZs,
- security groups: bastion (SSH from the admin CIDR), web (SSH from the bastion SG, HTTP from the VPC),
- the bastion instance (tags Name=bastion, Role=bastion, Env=<env>),
- a launch template, an ALB with a target group and listener, and the Auto Scaling Group `web`
  spread over the private subnets and attached to the target group,
with the same tags production uses (Name, Role, Env, Service).
"""

from __future__ import annotations

import base64
import zlib
from dataclasses import dataclass, field

FLEET_TAG = "ec2fleet:fleet"


def vpc_prefix(fleet: str) -> str:
    """First two octets of a fleet's VPC: 10.213 for `local`, another 10.x for other fleets (tests),
    so two fleets' container networks never overlap on one machine."""
    if fleet == "local":
        return "10.213"
    return f"10.{214 + zlib.crc32(fleet.encode()) % 40}"


def vpc_cidr(fleet: str) -> str:
    return f"{vpc_prefix(fleet)}.0.0/16"


@dataclass
class FleetSpec:
    """What the local fleet should look like; `size` is the web ASG's desired capacity."""

    name: str = "local"
    env: str = "local"
    service: str = "sampleapp"
    region: str = "us-east-1"
    size: int = 4
    max_size: int = 30
    key_name: str = "ec2fleet-local"
    public_key: str = ""
    admin_cidr: str = "127.0.0.1/32"
    deregistration_delay: int = 5
    user_data: str = ""
    tags: dict = field(default_factory=dict)

    def base_tags(self) -> dict:
        return {"Env": self.env, "Service": self.service, FLEET_TAG: self.name, **self.tags}


def _tag_list(tags: dict) -> list[dict]:
    return [{"Key": k, "Value": str(v)} for k, v in tags.items()]


def _spec(resource: str, tags: dict) -> list[dict]:
    return [{"ResourceType": resource, "Tags": _tag_list(tags)}]


class World:
    """Builds and reads the fleet's AWS resources through boto3 clients made by `clients(name)`."""

    def __init__(self, clients, spec: FleetSpec):
        self.spec = spec
        self.ec2 = clients("ec2")
        self.asg = clients("autoscaling")
        self.elbv2 = clients("elbv2")

    # -- lookups ---------------------------------------------------------------------------
    def _find_vpc(self):
        vpcs = self.ec2.describe_vpcs(
            Filters=[{"Name": f"tag:{FLEET_TAG}", "Values": [self.spec.name]}]
        )["Vpcs"]
        return vpcs[0]["VpcId"] if vpcs else None

    def _image_id(self) -> str:
        images = self.ec2.describe_images(
            Filters=[{"Name": "tag:Name", "Values": ["ec2fleet-debian12"]}], Owners=["self"]
        )["Images"]
        if images:
            return images[0]["ImageId"]
        # The emulator ships stock images; any one stands for the fleet's Debian 12 image
        # (the container image is what really runs).
        return self.ec2.describe_images(Owners=["amazon"], MaxResults=5)["Images"][0]["ImageId"]

    # -- build -----------------------------------------------------------------------------
    def ensure(self) -> dict:
        """Create what is missing; return the ids the rest of the tooling needs."""
        s = self.spec
        az = lambda letter: f"{s.region}{letter}"  # noqa: E731
        prefix = vpc_prefix(s.name)
        vpc_id = self._find_vpc()
        if vpc_id is None:
            vpc_id = self.ec2.create_vpc(
                CidrBlock=vpc_cidr(s.name),
                TagSpecifications=_spec("vpc", {**s.base_tags(), "Name": f"{s.name}-vpc"}),
            )["Vpc"]["VpcId"]
            self.ec2.modify_vpc_attribute(VpcId=vpc_id, EnableDnsHostnames={"Value": True})
            igw = self.ec2.create_internet_gateway()["InternetGateway"]["InternetGatewayId"]
            self.ec2.attach_internet_gateway(InternetGatewayId=igw, VpcId=vpc_id)
            self.ec2.create_subnet(
                VpcId=vpc_id, CidrBlock=f"{prefix}.100.0/24", AvailabilityZone=az("a"),
                TagSpecifications=_spec("subnet", {**s.base_tags(), "Name": f"{s.name}-public-a", "Tier": "public"}),
            )
            for number, letter in enumerate("abc", start=1):
                self.ec2.create_subnet(
                    VpcId=vpc_id, CidrBlock=f"{prefix}.{number}.0/24", AvailabilityZone=az(letter),
                    TagSpecifications=_spec("subnet", {**s.base_tags(), "Name": f"{s.name}-private-{letter}", "Tier": "private"}),
                )
        subnets = self.ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [vpc_id]}])["Subnets"]
        tier = lambda sn: {t["Key"]: t["Value"] for t in sn.get("Tags", [])}.get("Tier")  # noqa: E731
        public = [sn["SubnetId"] for sn in subnets if tier(sn) == "public"]
        private = sorted((sn for sn in subnets if tier(sn) == "private"), key=lambda sn: sn["AvailabilityZone"])
        private_ids = [sn["SubnetId"] for sn in private]

        bastion_sg = self._ensure_sg(vpc_id, f"{s.name}-bastion", "SSH from the admin networks",
                                     [{"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22,
                                       "IpRanges": [{"CidrIp": s.admin_cidr, "Description": "admins"}]}])
        web_sg = self._ensure_sg(vpc_id, f"{s.name}-web", "Web instances: HTTP from the VPC, SSH from the bastion",
                                 [{"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22,
                                   "UserIdGroupPairs": [{"GroupId": bastion_sg, "Description": "bastion"}]},
                                  {"IpProtocol": "tcp", "FromPort": 80, "ToPort": 80,
                                   "IpRanges": [{"CidrIp": vpc_cidr(s.name), "Description": "load balancer"}]}])
        self._ensure_key_pair()
        image_id = self._image_id()
        bastion_id = self._ensure_bastion(image_id, public[0], bastion_sg)
        tg_arn = self._ensure_target_group(vpc_id)
        lb_arn = self._ensure_load_balancer(public + private_ids[:1], web_sg, tg_arn)
        lt_id = self._ensure_launch_template(image_id, web_sg)
        self._ensure_asg(lt_id, private_ids, tg_arn)
        return {
            "vpc_id": vpc_id, "bastion_instance_id": bastion_id, "target_group_arn": tg_arn,
            "load_balancer_arn": lb_arn, "launch_template_id": lt_id, "asg_name": "web",
            "private_subnets": private_ids, "public_subnets": public,
        }

    def _ensure_sg(self, vpc_id: str, name: str, description: str, ingress: list[dict]) -> str:
        found = self.ec2.describe_security_groups(
            Filters=[{"Name": "vpc-id", "Values": [vpc_id]}, {"Name": "group-name", "Values": [name]}]
        )["SecurityGroups"]
        if found:
            return found[0]["GroupId"]
        sg = self.ec2.create_security_group(
            GroupName=name, Description=description, VpcId=vpc_id,
            TagSpecifications=_spec("security-group", {**self.spec.base_tags(), "Name": name}),
        )["GroupId"]
        self.ec2.authorize_security_group_ingress(GroupId=sg, IpPermissions=ingress)
        return sg

    def _ensure_key_pair(self) -> None:
        names = {k["KeyName"] for k in self.ec2.describe_key_pairs()["KeyPairs"]}
        if self.spec.key_name not in names and self.spec.public_key:
            self.ec2.import_key_pair(KeyName=self.spec.key_name, PublicKeyMaterial=self.spec.public_key.encode())

    def _ensure_bastion(self, image_id: str, subnet_id: str, sg: str) -> str:
        found = self.instances(role="bastion")
        if found:
            return found[0]["InstanceId"]
        tags = {**self.spec.base_tags(), "Name": "bastion", "Role": "bastion"}
        return self.ec2.run_instances(
            ImageId=image_id, InstanceType="t3.micro", MinCount=1, MaxCount=1, KeyName=self.spec.key_name,
            NetworkInterfaces=[{"DeviceIndex": 0, "SubnetId": subnet_id, "Groups": [sg],
                                "AssociatePublicIpAddress": True}],
            TagSpecifications=_spec("instance", tags),
        )["Instances"][0]["InstanceId"]

    def _ensure_target_group(self, vpc_id: str) -> str:
        name = f"{self.spec.name}-web"
        try:
            return self.elbv2.describe_target_groups(Names=[name])["TargetGroups"][0]["TargetGroupArn"]
        except self.elbv2.exceptions.TargetGroupNotFoundException:
            pass
        arn = self.elbv2.create_target_group(
            Name=name, Protocol="HTTP", Port=80, VpcId=vpc_id, TargetType="instance",
            HealthCheckPath="/health", HealthCheckIntervalSeconds=5, HealthyThresholdCount=2,
            UnhealthyThresholdCount=2, Tags=_tag_list(self.spec.base_tags()),
        )["TargetGroups"][0]["TargetGroupArn"]
        self.elbv2.modify_target_group_attributes(
            TargetGroupArn=arn,
            Attributes=[{"Key": "deregistration_delay.timeout_seconds", "Value": str(self.spec.deregistration_delay)}],
        )
        return arn

    def _ensure_load_balancer(self, subnets: list[str], sg: str, tg_arn: str) -> str:
        name = f"{self.spec.name}-web"
        try:
            return self.elbv2.describe_load_balancers(Names=[name])["LoadBalancers"][0]["LoadBalancerArn"]
        except self.elbv2.exceptions.LoadBalancerNotFoundException:
            pass
        arn = self.elbv2.create_load_balancer(
            Name=name, Subnets=subnets, SecurityGroups=[sg], Scheme="internet-facing", Type="application",
            Tags=_tag_list(self.spec.base_tags()),
        )["LoadBalancers"][0]["LoadBalancerArn"]
        self.elbv2.create_listener(
            LoadBalancerArn=arn, Protocol="HTTP", Port=80,
            DefaultActions=[{"Type": "forward", "TargetGroupArn": tg_arn}],
        )
        return arn

    def _ensure_launch_template(self, image_id: str, sg: str) -> str:
        name = f"{self.spec.name}-web"
        found = self.ec2.describe_launch_templates(
            Filters=[{"Name": "launch-template-name", "Values": [name]}]
        )["LaunchTemplates"]
        if found:
            return found[0]["LaunchTemplateId"]
        data = {
            "ImageId": image_id, "InstanceType": "t3.small", "KeyName": self.spec.key_name,
            "SecurityGroupIds": [sg],
            "TagSpecifications": _spec("instance", {**self.spec.base_tags(), "Name": "web", "Role": "web"}),
        }
        if self.spec.user_data:
            data["UserData"] = base64.b64encode(self.spec.user_data.encode()).decode()
        return self.ec2.create_launch_template(LaunchTemplateName=name, LaunchTemplateData=data)[
            "LaunchTemplate"]["LaunchTemplateId"]

    def _ensure_asg(self, lt_id: str, subnets: list[str], tg_arn: str) -> None:
        self._lt_id, self._subnets = lt_id, subnets
        groups = self.asg.describe_auto_scaling_groups(AutoScalingGroupNames=["web"])["AutoScalingGroups"]
        if not groups:
            self.asg.create_auto_scaling_group(
                AutoScalingGroupName="web",
                LaunchTemplate={"LaunchTemplateId": lt_id, "Version": "$Latest"},
                MinSize=0, MaxSize=max(self.spec.max_size, self.spec.size), DesiredCapacity=0,
                VPCZoneIdentifier=",".join(subnets), TargetGroupARNs=[tg_arn],
                HealthCheckType="ELB", HealthCheckGracePeriod=60,
                Tags=[{"Key": k, "Value": str(v), "PropagateAtLaunch": True}
                      for k, v in {**self.spec.base_tags(), "Name": "web", "Role": "web"}.items()],
            )
        self.scale(self.spec.size)

    def scale(self, size: int) -> None:
        """Set the web ASG's size. Growing places instances across the AZs as AWS does.

        Stand-in: moto launches every ASG instance into the first subnet of VPCZoneIdentifier, so
        a fleet that grew through moto alone would sit in one AZ. The local fleet launches each new
        instance itself into the least-used AZ's subnet and attaches it to the ASG (AttachInstances:
        same membership, target group registration and desired capacity as a launch by the ASG).
        Shrinking is left to the ASG (desired capacity).
        """
        group = self.asg.describe_auto_scaling_groups(AutoScalingGroupNames=["web"])["AutoScalingGroups"][0]
        self.asg.update_auto_scaling_group(AutoScalingGroupName="web", MaxSize=max(self.spec.max_size, size))
        members = [i["InstanceId"] for i in group["Instances"]]
        if size <= len(members):
            self.asg.update_auto_scaling_group(AutoScalingGroupName="web", DesiredCapacity=size)
            return
        subnets = self._subnets if hasattr(self, "_subnets") else group["VPCZoneIdentifier"].split(",")
        lt_id = self._lt_id if hasattr(self, "_lt_id") else group["LaunchTemplate"]["LaunchTemplateId"]
        per_subnet = {sn: 0 for sn in subnets}
        if members:
            for inst in self.ec2.describe_instances(InstanceIds=members)["Reservations"]:
                for i in inst["Instances"]:
                    per_subnet[i["SubnetId"]] = per_subnet.get(i["SubnetId"], 0) + 1
        tags = {**self.spec.base_tags(), "Name": "web", "Role": "web"}
        for _ in range(size - len(members)):
            subnet = min(subnets, key=lambda sn: (per_subnet[sn], subnets.index(sn)))
            per_subnet[subnet] += 1
            iid = self.ec2.run_instances(
                LaunchTemplate={"LaunchTemplateId": lt_id, "Version": "$Latest"}, MinCount=1, MaxCount=1,
                SubnetId=subnet, TagSpecifications=_spec("instance", tags),
            )["Instances"][0]["InstanceId"]
            self.asg.attach_instances(AutoScalingGroupName="web", InstanceIds=[iid])

    # -- reads -----------------------------------------------------------------------------
    def instances(self, role: str | None = None, states=("pending", "running")) -> list[dict]:
        filters = [{"Name": f"tag:{FLEET_TAG}", "Values": [self.spec.name]},
                   {"Name": "instance-state-name", "Values": list(states)}]
        if role:
            filters.append({"Name": "tag:Role", "Values": [role]})
        found = []
        for page in self.ec2.get_paginator("describe_instances").paginate(Filters=filters):
            for reservation in page["Reservations"]:
                found.extend(reservation["Instances"])
        return found

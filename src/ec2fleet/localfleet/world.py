"""The emulated AWS side of the local fleet: a production-shaped VPC in the moto server.

What it creates (idempotently, looked up by tags before anything is made):
- a VPC with one public subnet (bastion) and private subnets in three AZs,
- security groups: bastion (SSH from the admin CIDR), web (SSH from the bastion SG, HTTP from the VPC),
- the bastion instance (tags Name=bastion, Role=bastion, Env=<env>),
- a launch template, an ALB with a target group and listener, and the Auto Scaling Group `web`
  spread over the private subnets and attached to the target group,
- optionally more Auto Scaling Groups (`FleetSpec.groups`, one `GroupSpec` each): same launch
  template and subnets, tag Role=web, their own Name tag; each attached to the `web` target group
  or to another one, which gets its own listener on the ALB (port 8081, 8082, ...),
with the same tags production uses (Name, Role, Env, Service).
"""

from __future__ import annotations

import base64
import re
import zlib
from dataclasses import dataclass, field
from typing import NamedTuple

FLEET_TAG = "ec2fleet:fleet"
DEFAULT_GROUP = "web"  # the ASG and target group every local fleet has
MAX_INSTANCES = 50  # web instances over all groups
DEFAULT_SIZE = 3  # the web ASG's size when none is given: one instance per AZ
FIRST_EXTRA_LISTENER_PORT = 8081  # the ALB listener port of the first target group after `web`
_NAME = re.compile(r"^[a-z][a-z0-9-]{0,19}$")
RESERVED_NAMES = {"bastion"}  # the bastion's Name tag and inventory group


def vpc_prefix(fleet: str) -> str:
    """First two octets of a fleet's VPC: 10.213 for `local`, another 10.x for other fleets (tests),
    so two fleets' container networks never overlap on one machine."""
    if fleet == "local":
        return "10.213"
    return f"10.{214 + zlib.crc32(fleet.encode()) % 40}"


def vpc_cidr(fleet: str) -> str:
    return f"{vpc_prefix(fleet)}.0.0/16"


def network_gateway(fleet: str) -> str:
    """The container network's gateway (the controller's address on the VPC's network)."""
    return f"{vpc_prefix(fleet)}.0.1"


class PublicNetwork(NamedTuple):
    subnet: str
    gateway: str  # the controller's address there
    bastion: str  # the bastion's Elastic IP


def public_network(fleet: str) -> PublicNetwork:
    """The internet side of the fleet's internet gateway: a /28 of TEST-NET-3 (203.0.113.0/24,
    RFC 5737, never routed), one per fleet. The bastion's container has an interface on it,
    standing in for the gateway's NAT of the public address onto the private one."""
    base = 0 if fleet == "local" else 16 * (1 + zlib.crc32(fleet.encode()) % 15)
    return PublicNetwork(f"203.0.113.{base}/28", f"203.0.113.{base + 1}", f"203.0.113.{base + 10}")


@dataclass(frozen=True)
class GroupSpec:
    """One more Auto Scaling Group beside `web`.

    name          the ASG's name, and its instances' Name tag (inventory hostnames `<name>-i-...`)
    size          desired capacity (1-50)
    fixed         MinSize = DesiredCapacity = size (MaxSize stays at the fleet's max_size, or
                  twice the size if more, so a deploy can still surge); otherwise MinSize 0, as `web`
    target_group  `web`: the fleet's target group (ALB port 80, the balancer's lb_port); another
                  name: a target group of its own, behind its own ALB listener and local port
    """

    name: str
    size: int
    fixed: bool = False
    target_group: str = DEFAULT_GROUP

    @classmethod
    def parse(cls, text: str) -> GroupSpec:
        """`NAME:SIZE[:fixed][:tg=TARGET_GROUP]`, e.g. `api:2:fixed` or `batch:3:tg=batch`."""
        parts = [p.strip() for p in text.strip().split(":")]
        if len(parts) < 2 or not parts[1].isdigit():
            raise ValueError(f"group {text!r}: expected NAME:SIZE[:fixed][:tg=TARGET_GROUP]")
        fixed, target_group = False, DEFAULT_GROUP
        for option in parts[2:]:
            if option == "fixed":
                fixed = True
            elif option.startswith("tg=") and option[3:]:
                target_group = option[3:]
            else:
                raise ValueError(f"group {text!r}: unknown option {option!r} (fixed or tg=TARGET_GROUP)")
        group = cls(parts[0], int(parts[1]), fixed, target_group)
        group.validate()
        return group

    def __str__(self) -> str:
        text = f"{self.name}:{self.size}" + (":fixed" if self.fixed else "")
        return text + (f":tg={self.target_group}" if self.target_group != DEFAULT_GROUP else "")

    def validate(self) -> None:
        if not _NAME.match(self.name) or self.name in RESERVED_NAMES:
            raise ValueError(f"group name {self.name!r}: lower-case letters, digits and '-', at most 20, "
                             f"starting with a letter, not {', '.join(sorted(RESERVED_NAMES))}")
        if not _NAME.match(self.target_group):
            raise ValueError(f"group {self.name}: target group name {self.target_group!r}: lower-case letters, "
                             "digits and '-', at most 20, starting with a letter")
        if not 1 <= self.size <= MAX_INSTANCES:
            raise ValueError(f"group {self.name}: size must be between 1 and {MAX_INSTANCES}, got {self.size}")


def parse_groups(value) -> tuple[GroupSpec, ...]:
    """Groups from `api:2:fixed,batch:3` (the CLI's form) or from GroupSpecs / such strings."""
    if not value:
        return ()
    items = value.split(",") if isinstance(value, str) else list(value)
    return tuple(item if isinstance(item, GroupSpec) else GroupSpec.parse(item) for item in items if item)


@dataclass
class FleetSpec:
    """What the local fleet should look like; `size` is the web ASG's desired capacity, `groups`
    the Auto Scaling Groups beside it (none by default: one ASG `web`, MinSize 0)."""

    name: str = "local"
    env: str = "local"
    service: str = "sampleapp"
    region: str = "us-east-1"
    size: int = DEFAULT_SIZE
    max_size: int = 30
    key_name: str = "ec2fleet-local"
    public_key: str = ""
    admin_cidr: str = "127.0.0.1/32"
    deregistration_delay: int = 5
    user_data: str = ""
    tags: dict = field(default_factory=dict)
    groups: tuple[GroupSpec, ...] = ()

    def base_tags(self) -> dict:
        return {"Env": self.env, "Service": self.service, FLEET_TAG: self.name, **self.tags}

    def all_groups(self) -> list[GroupSpec]:
        """Every ASG of the fleet: `web` (size `size`, MinSize 0, target group web) first."""
        return [GroupSpec(DEFAULT_GROUP, self.size), *self.groups]

    def target_group_names(self) -> list[str]:
        """Short target group names, `web` first, then in the order the groups name them."""
        names = [DEFAULT_GROUP]
        for group in self.groups:
            if group.target_group not in names:
                names.append(group.target_group)
        return names

    def validate(self) -> None:
        if not 1 <= self.size <= MAX_INSTANCES:
            raise ValueError(f"size must be between 1 and {MAX_INSTANCES}, got {self.size}")
        seen = {DEFAULT_GROUP}
        for group in self.groups:
            group.validate()
            if group.name in seen:
                raise ValueError(f"group {group.name!r} given twice" if group.name != DEFAULT_GROUP else
                                 "the group `web` is always there: size it with size (--size), "
                                 "and give other names to the groups beside it")
            seen.add(group.name)
        total = sum(g.size for g in self.all_groups())
        if total > MAX_INSTANCES:
            raise ValueError(f"{total} instances over all groups: at most {MAX_INSTANCES}")
        longest = max(len(f"{self.name}-{tg}") for tg in self.target_group_names())
        if longest > 32:
            raise ValueError(f"target group names `{self.name}-<target group>` must fit AWS's 32 characters")


def group_tags(spec: FleetSpec, group: str) -> dict:
    """The tags an ASG of the fleet propagates to its instances: its own Name, Role=web."""
    return {**spec.base_tags(), "Name": group, "Role": "web"}


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
        self._security_groups: dict[str, list[str]] = {}  # launch template -> its security groups

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
        bastion_address = self._ensure_bastion_address(bastion_id)
        s.validate()
        tg_arns = {tg: self._ensure_target_group(vpc_id, tg) for tg in s.target_group_names()}
        tg_arn = tg_arns[DEFAULT_GROUP]
        lb_arn = self._ensure_load_balancer(public + private_ids[:1], web_sg, tg_arn)
        listener_ports = self._ensure_listeners(lb_arn, tg_arns)
        lt_id = self._ensure_launch_template(image_id, web_sg)
        self._lt_id, self._subnets = lt_id, private_ids
        for group in s.all_groups():
            self._ensure_asg(group, lt_id, private_ids, tg_arns[group.target_group])
        return {
            "vpc_id": vpc_id, "bastion_instance_id": bastion_id, "bastion_public_ip": bastion_address,
            "target_group_arn": tg_arn,
            "load_balancer_arn": lb_arn, "launch_template_id": lt_id, "asg_name": DEFAULT_GROUP,
            "private_subnets": private_ids, "public_subnets": public,
            "target_groups": {tg: {"arn": arn, "listener_port": listener_ports[tg]} for tg, arn in tg_arns.items()},
            "groups": {g.name: {"size": g.size, "fixed": g.fixed, "target_group": g.target_group}
                       for g in s.all_groups()},
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
                                "AssociatePublicIpAddress": False}],
            TagSpecifications=_spec("instance", tags),
        )["Instances"][0]["InstanceId"]

    def _ensure_bastion_address(self, instance_id: str) -> str:
        """The bastion's Elastic IP (the address operators and the inventory plugin reach it at),
        allocated at the fleet's address on its public network and associated with the bastion."""
        address = public_network(self.spec.name).bastion
        found = self.ec2.describe_addresses(Filters=[{"Name": "public-ip", "Values": [address]}])["Addresses"]
        if found and found[0].get("InstanceId") == instance_id:
            return address
        allocation = found[0]["AllocationId"] if found else self.ec2.allocate_address(
            Domain="vpc", Address=address,
            TagSpecifications=_spec("elastic-ip", {**self.spec.base_tags(), "Name": f"{self.spec.name}-bastion"}),
        )["AllocationId"]
        self.ec2.associate_address(InstanceId=instance_id, AllocationId=allocation, AllowReassociation=True)
        return address

    def _ensure_target_group(self, vpc_id: str, short: str = DEFAULT_GROUP) -> str:
        name = f"{self.spec.name}-{short}"
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

    def _ensure_listeners(self, lb_arn: str, tg_arns: dict[str, str]) -> dict[str, int]:
        """A listener forwarding to each target group (web: port 80, made with the ALB; the others
        8081, 8082, ... in the order they first appear); short name -> listener port."""
        listeners = self.elbv2.describe_listeners(LoadBalancerArn=lb_arn)["Listeners"]
        by_tg = {}
        for listener in listeners:
            for action in listener.get("DefaultActions", []):
                if action.get("Type") == "forward" and action.get("TargetGroupArn"):
                    by_tg.setdefault(action["TargetGroupArn"], listener["Port"])
        used = {listener["Port"] for listener in listeners}
        ports = {}
        for short, arn in tg_arns.items():
            if arn not in by_tg:
                port = FIRST_EXTRA_LISTENER_PORT
                while port in used:
                    port += 1
                self.elbv2.create_listener(LoadBalancerArn=lb_arn, Protocol="HTTP", Port=port,
                                           DefaultActions=[{"Type": "forward", "TargetGroupArn": arn}])
                used.add(port)
                by_tg[arn] = port
            ports[short] = by_tg[arn]
        return ports

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

    def _ensure_asg(self, group: GroupSpec, lt_id: str, subnets: list[str], tg_arn: str) -> None:
        found = self.asg.describe_auto_scaling_groups(AutoScalingGroupNames=[group.name])["AutoScalingGroups"]
        if not found:
            self.asg.create_auto_scaling_group(
                AutoScalingGroupName=group.name,
                LaunchTemplate={"LaunchTemplateId": lt_id, "Version": "$Latest"},
                MinSize=0, MaxSize=self.max_size(group.size, group.fixed), DesiredCapacity=0,
                VPCZoneIdentifier=",".join(subnets), TargetGroupARNs=[tg_arn],
                HealthCheckType="ELB", HealthCheckGracePeriod=60,
                Tags=[{"Key": k, "Value": str(v), "PropagateAtLaunch": True}
                      for k, v in group_tags(self.spec, group.name).items()],
            )
        elif tg_arn not in found[0].get("TargetGroupARNs", []):
            self.asg.attach_load_balancer_target_groups(AutoScalingGroupName=group.name, TargetGroupARNs=[tg_arn])
        self.scale(group.size, group=group.name, fixed=group.fixed)

    def max_size(self, size: int, fixed: bool = False) -> int:
        """MaxSize: the fleet's max_size (30), or more for a big group; a fixed group keeps room to
        double, so a deploy can surge it (its MinSize is its size)."""
        return max(self.spec.max_size, 2 * size if fixed else size)

    def scale(self, size: int, group: str = DEFAULT_GROUP, fixed: bool = False) -> None:
        """Set an ASG's size (`fixed`: MinSize too). Growing places instances across the AZs as AWS does.

        Stand-in: moto launches every ASG instance into the first subnet of VPCZoneIdentifier, so
        a fleet that grew through moto alone would sit in one AZ. The local fleet launches each new
        instance itself into the least-used AZ's subnet and attaches it to the ASG (AttachInstances:
        same membership, target group registration and desired capacity as a launch by the ASG).
        Shrinking is left to the ASG (desired capacity). MinSize is set last when growing (AWS and
        moto raise the desired capacity to a new MinSize above it, and would launch into one AZ),
        together with the desired capacity when shrinking.
        """
        found = self.asg.describe_auto_scaling_groups(AutoScalingGroupNames=[group])["AutoScalingGroups"][0]
        self.asg.update_auto_scaling_group(AutoScalingGroupName=group, MaxSize=self.max_size(size, fixed))
        members = [i["InstanceId"] for i in found["Instances"]]
        min_size = size if fixed else 0
        if size <= len(members):
            self.asg.update_auto_scaling_group(AutoScalingGroupName=group, MinSize=min_size, DesiredCapacity=size)
            return
        subnets = self._subnets if hasattr(self, "_subnets") else found["VPCZoneIdentifier"].split(",")
        per_subnet = {sn: 0 for sn in subnets}
        if members:
            for inst in self.ec2.describe_instances(InstanceIds=members)["Reservations"]:
                for i in inst["Instances"]:
                    per_subnet[i["SubnetId"]] = per_subnet.get(i["SubnetId"], 0) + 1
        if min_size < found["MinSize"]:
            self.asg.update_auto_scaling_group(AutoScalingGroupName=group, MinSize=min_size)
        for _ in range(size - len(members)):
            subnet = min(subnets, key=lambda sn: (per_subnet[sn], subnets.index(sn)))
            per_subnet[subnet] += 1
            self.launch(group, subnet, found=found)
        self.asg.update_auto_scaling_group(AutoScalingGroupName=group, MinSize=min_size)

    def launch(self, group: str, subnet: str, private_ip: str | None = None, found: dict | None = None) -> str:
        """One instance of `group` launched into `subnet` (at `private_ip`, e.g. the address of an
        instance that is gone, as AWS may hand out again) and attached to the group; its id."""
        if found is None:
            found = self.asg.describe_auto_scaling_groups(AutoScalingGroupNames=[group])["AutoScalingGroups"][0]
        lt_id = self._lt_id if hasattr(self, "_lt_id") else found["LaunchTemplate"]["LaunchTemplateId"]
        groups = self._template_security_groups(lt_id)
        # The primary interface is deleted with the instance, its address freed, as a launch's is
        # on AWS (moto's default keeps the interface, and the address, for good).
        nic = {"DeviceIndex": 0, "SubnetId": subnet, "Groups": groups, "DeleteOnTermination": True,
               **({"PrivateIpAddress": private_ip} if private_ip else {})}
        iid = self.ec2.run_instances(
            LaunchTemplate={"LaunchTemplateId": lt_id, "Version": "$Latest"}, MinCount=1, MaxCount=1,
            NetworkInterfaces=[nic], TagSpecifications=_spec("instance", group_tags(self.spec, group)),
        )["Instances"][0]["InstanceId"]
        self.asg.attach_instances(AutoScalingGroupName=group, InstanceIds=[iid])
        return iid

    def _template_security_groups(self, lt_id: str) -> list[str]:
        """The launch template's security groups, read once per World (a launch's interface names them)."""
        if lt_id not in self._security_groups:
            self._security_groups[lt_id] = self.ec2.describe_launch_template_versions(
                LaunchTemplateId=lt_id, Versions=["$Latest"])["LaunchTemplateVersions"][0]["LaunchTemplateData"].get(
                "SecurityGroupIds", [])
        return self._security_groups[lt_id]

    def groups(self) -> list[dict]:
        """The fleet's Auto Scaling Groups as the emulator describes them (tag ec2fleet:fleet)."""
        return fleet_groups(self.asg, self.spec.name)

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


def fleet_groups(autoscaling, fleet: str) -> list[dict]:
    """Every Auto Scaling Group of a fleet (tagged ec2fleet:fleet=<fleet>), sorted by name."""
    found = []
    pages = autoscaling.get_paginator("describe_auto_scaling_groups").paginate(
        Filters=[{"Name": f"tag:{FLEET_TAG}", "Values": [fleet]}])
    for page in pages:
        found.extend(page["AutoScalingGroups"])
    return sorted(found, key=lambda g: g["AutoScalingGroupName"])

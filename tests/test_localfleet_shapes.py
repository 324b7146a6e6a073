"""The local fleet's shapes (world.py): several ASGs, fixed-size groups, a second target group,
built in the emulator without containers; and today's default left exactly as it was."""

from __future__ import annotations

import ipaddress

import boto3
import pytest

from ec2fleet.localfleet import control
from ec2fleet.localfleet.world import FleetSpec, GroupSpec, World, fleet_groups, parse_groups, public_network


# -- the spec and its text form ------------------------------------------------------------------
def test_group_text_form():
    assert GroupSpec.parse("api:2:fixed") == GroupSpec("api", 2, fixed=True)
    assert GroupSpec.parse("batch:3") == GroupSpec("batch", 3)
    assert GroupSpec.parse("batch:3:tg=second:fixed") == GroupSpec("batch", 3, True, "second")
    assert GroupSpec.parse(" api : 1 : tg=web ") == GroupSpec("api", 1)
    assert parse_groups("api:2:fixed,batch:3:tg=second") == (GroupSpec("api", 2, True), GroupSpec("batch", 3, False, "second"))
    assert parse_groups(["api:1", GroupSpec("b", 2)]) == (GroupSpec("api", 1), GroupSpec("b", 2))
    assert parse_groups("") == () and parse_groups(None) == ()
    for group in parse_groups("api:2:fixed,batch:3:tg=second,x:1"):
        assert GroupSpec.parse(str(group)) == group


@pytest.mark.parametrize("text, error", [
    ("api", "expected NAME:SIZE"),
    ("api:two", "expected NAME:SIZE"),
    ("api:2:big", "unknown option 'big'"),
    ("api:2:tg=", "unknown option 'tg='"),
    ("Api:2", "group name 'Api'"),
    ("bastion:1", "group name 'bastion'"),
    ("api:0", "size must be between 1 and 50"),
    ("api:51", "size must be between 1 and 50"),
    ("api:1:tg=Second", "target group name 'Second'"),
])
def test_group_text_form_refused(text, error):
    with pytest.raises(ValueError, match=error):
        GroupSpec.parse(text)


@pytest.mark.parametrize("groups, error", [
    ("web:2", "the group `web` is always there"),
    ("api:1,api:2", "group 'api' given twice"),
    ("api:30,batch:20", "51 instances over all groups: at most 50"),
])
def test_fleet_spec_refused(groups, error):
    with pytest.raises(ValueError, match=error):
        FleetSpec(size=1, groups=parse_groups(groups)).validate()


def test_fleet_spec_groups_and_target_groups():
    spec = FleetSpec(size=3, groups=parse_groups("api:2:fixed:tg=second,batch:1,jobs:1:tg=second,x:1:tg=third"))
    assert [(g.name, g.size, g.fixed, g.target_group) for g in spec.all_groups()] == [
        ("web", 3, False, "web"), ("api", 2, True, "second"), ("batch", 1, False, "web"),
        ("jobs", 1, False, "second"), ("x", 1, False, "third")]
    assert spec.target_group_names() == ["web", "second", "third"]
    assert FleetSpec().all_groups() == [GroupSpec("web", 3)] and FleetSpec().target_group_names() == ["web"]


def test_control_up_refuses_a_bad_shape_before_starting_anything(monkeypatch):
    monkeypatch.setattr(control.subprocess, "run", lambda *a, **k: pytest.fail("started something"))
    with pytest.raises(ValueError, match="size must be between 1 and 50"):
        control.up(size=0, name="never")
    with pytest.raises(ValueError, match="unknown option 'fixd'"):
        control.up(size=2, name="never", groups="api:1:fixd")


def test_describe_names_every_group():
    spec = FleetSpec(size=2, groups=parse_groups("api:1:fixed:tg=second,batch:3"))
    assert control.describe(spec) == "ASG web of 2, api of 1 (fixed, target group second), batch of 3"


# -- built in the emulator -----------------------------------------------------------------------
def clients(service):
    return boto3.client(service)


def group(name: str) -> dict:
    return clients("autoscaling").describe_auto_scaling_groups(AutoScalingGroupNames=[name])["AutoScalingGroups"][0]


def instance_tags(iids: list[str]) -> dict[str, dict]:
    found = {}
    for res in clients("ec2").describe_instances(InstanceIds=iids)["Reservations"]:
        for inst in res["Instances"]:
            found[inst["InstanceId"]] = {**{t["Key"]: t["Value"] for t in inst["Tags"]},
                                         "_az": inst["Placement"]["AvailabilityZone"]}
    return found


def listeners(lb_arn: str) -> dict[int, str]:
    return {lis["Port"]: lis["DefaultActions"][0]["TargetGroupArn"]
            for lis in clients("elbv2").describe_listeners(LoadBalancerArn=lb_arn)["Listeners"]}


@pytest.mark.emulator
def test_default_fleet_is_one_web_asg_of_three_min_zero(aws):
    ids = World(clients, FleetSpec(name="dflt")).ensure()
    groups = fleet_groups(clients("autoscaling"), "dflt")
    assert [g["AutoScalingGroupName"] for g in groups] == ["web"]
    web = groups[0]
    assert (web["MinSize"], web["DesiredCapacity"], web["MaxSize"]) == (0, 3, 30)
    assert web["TargetGroupARNs"] == [ids["target_group_arn"]]
    assert ids["asg_name"] == "web" and ids["groups"] == {"web": {"size": 3, "fixed": False, "target_group": "web"}}
    assert list(ids["target_groups"]) == ["web"] and ids["target_groups"]["web"]["listener_port"] == 80
    assert listeners(ids["load_balancer_arn"]) == {80: ids["target_group_arn"]}
    tags = instance_tags([i["InstanceId"] for i in web["Instances"]])
    assert {t["Name"] for t in tags.values()} == {"web"} and {t["Role"] for t in tags.values()} == {"web"}
    assert len({t["_az"] for t in tags.values()}) == 3


@pytest.mark.emulator
def test_the_bastion_has_an_elastic_ip_on_the_fleets_public_network_once(aws):
    # The address the inventory plugin wires the bastion at: its own /28 of TEST-NET-3 per fleet.
    ids = World(clients, FleetSpec(name="pub", size=1)).ensure()
    subnet, gateway, address = public_network("pub")
    assert ids["bastion_public_ip"] == address and ipaddress.ip_address(address) in ipaddress.ip_network(subnet)
    assert ipaddress.ip_network(subnet).subnet_of(ipaddress.ip_network("203.0.113.0/24"))
    assert gateway != address and public_network("local") == ("203.0.113.0/28", "203.0.113.1", "203.0.113.10")
    bastion = clients("ec2").describe_instances(InstanceIds=[ids["bastion_instance_id"]])["Reservations"][0]["Instances"][0]
    assert bastion["PublicIpAddress"] == address
    again = World(clients, FleetSpec(name="pub", size=1)).ensure()
    assert again["bastion_public_ip"] == address
    addresses = clients("ec2").describe_addresses(Filters=[{"Name": "public-ip", "Values": [address]}])["Addresses"]
    assert [a["InstanceId"] for a in addresses] == [ids["bastion_instance_id"]]


@pytest.mark.emulator
def test_groups_share_subnets_and_template_with_own_names_sizes_and_target_groups(aws):
    spec = FleetSpec(name="shp", size=2, groups=parse_groups("api:2:fixed,batch:3:tg=second"))
    ids = World(clients, spec).ensure()
    web, api, batch = group("web"), group("api"), group("batch")
    assert (web["MinSize"], web["DesiredCapacity"], web["MaxSize"]) == (0, 2, 30)
    assert (api["MinSize"], api["DesiredCapacity"], api["MaxSize"]) == (2, 2, 30)  # fixed: a surge still fits
    assert (batch["MinSize"], batch["DesiredCapacity"]) == (0, 3)
    for g in (api, batch):
        assert g["VPCZoneIdentifier"] == web["VPCZoneIdentifier"]
        assert g["LaunchTemplate"]["LaunchTemplateId"] == web["LaunchTemplate"]["LaunchTemplateId"]
    second = ids["target_groups"]["second"]["arn"]
    assert api["TargetGroupARNs"] == web["TargetGroupARNs"] == [ids["target_group_arn"]]
    assert batch["TargetGroupARNs"] == [second] and second != ids["target_group_arn"]
    assert clients("elbv2").describe_target_groups(TargetGroupArns=[second])["TargetGroups"][0]["TargetGroupName"] == "shp-second"
    assert listeners(ids["load_balancer_arn"]) == {80: ids["target_group_arn"], 8081: second}
    assert ids["target_groups"]["second"]["listener_port"] == 8081
    for g in (web, api, batch):
        tags = instance_tags([i["InstanceId"] for i in g["Instances"]])
        assert {t["Name"] for t in tags.values()} == {g["AutoScalingGroupName"]}
        assert {t["Role"] for t in tags.values()} == {"web"}  # the inventory's role_web has them all
        assert {t["ec2fleet:fleet"] for t in tags.values()} == {"shp"}
        assert len({t["_az"] for t in tags.values()}) == len(tags)  # 2 or 3 instances: one per AZ
    asg_tags = {t["Key"]: t["Value"] for t in api["Tags"]}
    assert asg_tags["Name"] == "api" and asg_tags["Role"] == "web"
    registered = {d["Target"]["Id"] for d in clients("elbv2").describe_target_health(TargetGroupArn=second)[
        "TargetHealthDescriptions"]}
    assert registered == {i["InstanceId"] for i in batch["Instances"]}


@pytest.mark.emulator
def test_ensure_again_resizes_groups_and_keeps_listeners(aws):
    first = World(clients, FleetSpec(name="rs", size=1, groups=parse_groups("api:2:fixed,batch:1:tg=second"))).ensure()
    again = World(clients, FleetSpec(name="rs", size=1, groups=parse_groups("api:3:fixed,batch:1:tg=second"))).ensure()
    assert again["target_groups"] == first["target_groups"]
    api = group("api")
    assert (api["MinSize"], api["DesiredCapacity"], len(api["Instances"])) == (3, 3, 3)
    World(clients, FleetSpec(name="rs", size=1, groups=parse_groups("api:1:fixed"))).ensure()
    api = group("api")
    assert (api["MinSize"], api["DesiredCapacity"], len(api["Instances"])) == (1, 1, 1)
    World(clients, FleetSpec(name="rs", size=1, groups=parse_groups("api:2"))).ensure()  # no longer fixed
    api = group("api")
    assert (api["MinSize"], api["DesiredCapacity"], len(api["Instances"])) == (0, 2, 2)
    # A later ensure that names only some groups leaves the others as they are.
    assert [g["AutoScalingGroupName"] for g in fleet_groups(clients("autoscaling"), "rs")] == ["api", "batch", "web"]
    assert listeners(first["load_balancer_arn"]) == {80: first["target_group_arn"],
                                                     8081: first["target_groups"]["second"]["arn"]}


@pytest.mark.emulator
def test_a_big_fixed_group_keeps_room_to_surge(aws):
    World(clients, FleetSpec(name="big", size=1, groups=parse_groups("api:16:fixed"))).ensure()
    api = group("api")
    assert (api["MinSize"], api["DesiredCapacity"], api["MaxSize"]) == (16, 16, 32)



@pytest.mark.emulator
def test_an_instance_can_be_launched_at_the_address_of_one_that_is_gone(aws):
    world = World(clients, FleetSpec(name="reuse", size=2))
    world.ensure()
    old = group("web")["Instances"][0]["InstanceId"]
    gone = clients("ec2").describe_instances(InstanceIds=[old])["Reservations"][0]["Instances"][0]
    clients("autoscaling").terminate_instance_in_auto_scaling_group(InstanceId=old, ShouldDecrementDesiredCapacity=True)
    new = world.launch("web", gone["SubnetId"], private_ip=gone["PrivateIpAddress"])
    again = clients("ec2").describe_instances(InstanceIds=[new])["Reservations"][0]["Instances"][0]
    assert (again["PrivateIpAddress"], again["SubnetId"]) == (gone["PrivateIpAddress"], gone["SubnetId"])
    web = group("web")
    assert new in {i["InstanceId"] for i in web["Instances"]} and web["DesiredCapacity"] == 2
    assert instance_tags([new])[new]["Name"] == "web"

def test_a_stuck_fleet_names_fleetds_last_error(tmp_path):
    log = tmp_path / "fleetd.log"
    assert control.last_error(log) is None
    log.write_text("2026-12-01 10:41:27,037 INFO fleetd started for fleet local\n"
                   "2026-12-01 10:41:27,084 ERROR reconcile failed: first\n"
                   "2026-12-01 10:41:27,613 ERROR reconcile failed: haproxy rejected the generated config: x\n"
                   "2026-12-01 10:41:28,000 INFO tick\n")
    assert control.last_error(log) == "reconcile failed: haproxy rejected the generated config: x"

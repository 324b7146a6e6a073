"""The local fleet's stand-ins for what moto lacks (standins.py), against the emulator, for every
group of a fleet: target groups following Standby and ASG terminations with the deregistration
delay, ASG tags over launch template tags, and new targets held back until they pass their
health check."""

from __future__ import annotations

from concurrent.futures import Future

import boto3
import pytest

from ec2fleet.localfleet import standins
from ec2fleet.localfleet.world import FleetSpec, World, fleet_groups, parse_groups

FLEET = "sti"


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def clients(service):
    return boto3.client(service)


def instances() -> dict[str, dict]:
    found = {}
    for res in clients("ec2").describe_instances()["Reservations"]:
        for inst in res["Instances"]:
            found[inst["InstanceId"]] = inst
    return found


def registered(tg_arn: str) -> set[str]:
    return {d["Target"]["Id"] for d in clients("elbv2").describe_target_health(TargetGroupArn=tg_arn)[
        "TargetHealthDescriptions"]}


def members(name: str) -> list[str]:
    return [i["InstanceId"] for i in clients("autoscaling").describe_auto_scaling_groups(
        AutoScalingGroupNames=[name])["AutoScalingGroups"][0]["Instances"]]


@pytest.fixture
def fleet(aws):
    spec = FleetSpec(name=FLEET, size=2, groups=parse_groups("api:2:fixed,batch:1:tg=second"))
    ids = World(clients, spec).ensure()
    clock = Clock()
    sync = standins.AsgTargetSync(clients("autoscaling"), clients("elbv2"), clock=clock)

    def run():
        return sync.sync(instances(), fleet_groups(clients("autoscaling"), FLEET))

    assert run() == []  # a fleet at rest: nothing to do
    return ids, sync, clock, run


@pytest.mark.emulator
@pytest.mark.parametrize("how", ["terminate_instance_in_auto_scaling_group", "scale-in"])
def test_asg_termination_drains_for_the_delay_then_deregisters(fleet, how):
    ids, sync, clock, run = fleet
    web_tg = ids["target_group_arn"]
    asg = clients("autoscaling")
    if how == "scale-in":
        before = set(members("api"))
        asg.update_auto_scaling_group(AutoScalingGroupName="api", MinSize=1, DesiredCapacity=1)
        (victim,) = before - set(members("api"))
    else:
        victim = members("api")[0]
        asg.terminate_instance_in_auto_scaling_group(InstanceId=victim, ShouldDecrementDesiredCapacity=True)
    assert instances()[victim]["State"]["Name"] == "terminated"  # moto: at once
    assert victim in registered(web_tg)  # ... and still registered

    actions = run()
    assert actions == [f"draining {victim} (terminated, left its ASG) in {FLEET}-web for 5s"]
    assert sync.draining_instances() == {victim}
    assert victim in registered(web_tg)  # as on AWS, deregistered only when the drain ends
    clock.now += 4.9
    assert run() == [] and sync.draining_instances() == {victim}
    clock.now += 0.2
    assert run() == [f"deregistered {victim} (terminated, left its ASG) from {FLEET}-web"]
    assert victim not in registered(web_tg) and sync.draining_instances() == set()
    assert run() == []


@pytest.mark.emulator
def test_termination_in_a_second_target_group_drains_there(fleet):
    ids, sync, clock, run = fleet
    second = ids["target_groups"]["second"]["arn"]
    victim = members("batch")[0]
    clients("autoscaling").terminate_instance_in_auto_scaling_group(InstanceId=victim, ShouldDecrementDesiredCapacity=False)
    actions = run()
    assert f"draining {victim} (terminated, left its ASG) in {FLEET}-second for 5s" in actions
    assert sync.draining_instances() == {victim}
    replacement = set(members("batch")) - {victim}
    assert replacement and replacement <= registered(second)  # moto registered the replacement at once
    clock.now += 5
    run()
    assert registered(second) == replacement


@pytest.mark.emulator
def test_standby_drains_and_comes_back_in_every_group(fleet):
    ids, sync, clock, run = fleet
    asg, web_tg = clients("autoscaling"), ids["target_group_arn"]
    host = members("api")[1]
    asg.enter_standby(AutoScalingGroupName="api", InstanceIds=[host], ShouldDecrementDesiredCapacity=True)
    assert run() == [f"draining {host} (Standby, running) in {FLEET}-web for 5s"]
    clock.now += 5
    assert run() == [f"deregistered {host} (Standby, running) from {FLEET}-web"]
    assert host not in registered(web_tg)
    asg.exit_standby(AutoScalingGroupName="api", InstanceIds=[host])
    # moto registers it again itself on ExitStandby; the stand-in does when it does not.
    assert run() in ([], [f"registered {host} (InService) in {FLEET}-web"])
    assert host in registered(web_tg) and sync.draining_instances() == set()
    # Back to Standby and out again before the drain ends: the drain is called off.
    asg.enter_standby(AutoScalingGroupName="api", InstanceIds=[host], ShouldDecrementDesiredCapacity=True)
    run()
    asg.exit_standby(AutoScalingGroupName="api", InstanceIds=[host])
    assert run() == [f"{host} back InService before its drain ended in {FLEET}-web"]
    assert host in registered(web_tg) and sync.draining_instances() == set()


@pytest.mark.emulator
def test_drain_forgotten_when_someone_else_deregisters(fleet):
    ids, sync, _, run = fleet
    victim = members("web")[0]
    clients("autoscaling").terminate_instance_in_auto_scaling_group(InstanceId=victim, ShouldDecrementDesiredCapacity=True)
    run()
    assert sync.draining_instances() == {victim}
    clients("elbv2").deregister_targets(TargetGroupArn=ids["target_group_arn"], Targets=[{"Id": victim, "Port": 80}])
    run()
    assert sync.draining_instances() == set()  # its container need not wait any longer


@pytest.mark.emulator
def test_sync_takes_group_names_as_before(fleet):
    _, sync, _, _ = fleet
    victim = members("web")[0]
    clients("autoscaling").terminate_instance_in_auto_scaling_group(InstanceId=victim, ShouldDecrementDesiredCapacity=True)
    assert sync.sync(instances(), ["web"]) == [f"draining {victim} (terminated, left its ASG) in {FLEET}-web for 5s"]


@pytest.mark.emulator
def test_asg_tags_win_over_the_launch_template_tags(fleet):
    asg = clients("autoscaling")
    before = set(members("batch"))
    asg.set_desired_capacity(AutoScalingGroupName="batch", DesiredCapacity=2)  # moto launches this one
    (new,) = set(members("batch")) - before
    name = lambda iid: {t["Key"]: t["Value"] for t in instances()[iid]["Tags"]}["Name"]  # noqa: E731
    assert name(new) == "web"  # moto: the shared launch template's Name
    tags = standins.AsgTagPropagation(clients("ec2"))
    actions = tags.sync(instances(), fleet_groups(asg, FLEET))
    assert actions == [f"tagged {new} as its ASG batch propagates: Name=batch"]
    assert name(new) == "batch"
    assert tags.sync(instances(), fleet_groups(asg, FLEET)) == []  # once per instance


# -- InitialHealth: new targets wait for their health check ----------------------------------------
class Now:
    """An executor that runs the probe when it is submitted."""

    def submit(self, fn, *args):
        future = Future()
        future.set_result(fn(*args))
        return future


class FakeElbv2:
    def describe_target_groups(self, TargetGroupArns):
        return {"TargetGroups": [{"Port": 80, "HealthCheckPath": "/health", "HealthCheckPort": "traffic-port",
                                  "HealthyThresholdCount": 2, "HealthCheckTimeoutSeconds": 5,
                                  "Matcher": {"HttpCode": "200"}}]}


TG = "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/local-web/1"


def test_a_new_target_gets_traffic_after_passing_its_health_check_twice():
    answers = {"http://10.0.0.5:80/health": [0, 503, 200, 200], "http://10.0.0.6:80/health": [200, 200]}
    probed = []

    def probe(url, timeout):
        probed.append(url)
        return answers[url].pop(0)

    clock = Clock()
    gate = standins.InitialHealth(FakeElbv2(), probe=probe, clock=clock, interval=1.0, admitted={"i-old"},
                                  executor=Now())
    candidates = {"i-old": "10.0.0.4", "i-new": "10.0.0.5", "i-other": "10.0.0.6"}
    assert gate.admit(TG, candidates) == {"i-old": "10.0.0.4"}  # known: at once; the others probed
    assert gate.admit(TG, candidates) == {"i-old": "10.0.0.4"}  # no second probe within the interval
    assert len(probed) == 2
    clock.now += 1
    gate.admit(TG, candidates)  # i-other passed twice: admitted on the next call
    clock.now += 1
    assert gate.admit(TG, candidates) == {"i-old": "10.0.0.4", "i-other": "10.0.0.6"}
    for _ in range(3):
        clock.now += 1
        gate.admit(TG, candidates)
    assert gate.admit(TG, candidates) == candidates  # 0, 503 reset the count; then 200 twice
    assert probed.count("http://10.0.0.5:80/health") == 4
    gate.forget({"i-new"})
    assert gate.admitted == {"i-new"}


def test_success_codes_matcher():
    assert standins._matches(200, "200") and standins._matches(204, "200-299")
    assert standins._matches(202, "200,202") and not standins._matches(301, "200-299")
    assert not standins._matches(0, "200")

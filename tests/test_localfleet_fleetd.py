"""fleetd's loop over a fleet of several groups and two target groups, against the emulator and
a real HAProxy, with the containers faked: every group and target group is served, a new
instance waits for its health check, and an instance the ASG terminates leaves the balancer at
once but keeps its container until its drain is over."""

from __future__ import annotations

import shutil
import threading

import boto3
import pytest

from ec2fleet import emulator
from ec2fleet.localfleet import fleetd, standins
from ec2fleet.localfleet.state import FleetState
from ec2fleet.localfleet.world import FleetSpec, World, parse_groups

pytestmark = [pytest.mark.emulator,
              pytest.mark.skipif(shutil.which("haproxy") is None, reason="needs haproxy (tools/platform packages)")]
FLEET = "fdt"


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


class FakeContainers:
    """containers.list_fleet/remove over a dict; records what the balancer config said at each removal."""

    def __init__(self, config_path):
        self.rows: dict[str, dict] = {}
        self.removed: list[tuple[str, str]] = []
        self.config_path = config_path
        self.lock = threading.Lock()

    def list_fleet(self, fleet):
        with self.lock:
            return {iid: dict(row) for iid, row in self.rows.items()}

    def remove(self, name):
        iid = name.rsplit("-", 2)[-2] + "-" + name.rsplit("-", 1)[-1]
        with self.lock:
            self.rows.pop(iid, None)
        self.removed.append((iid, self.config_path.read_text()))

    def launch(self, inst):
        with self.lock:
            self.rows[inst["InstanceId"]] = {"name": f"ec2fleet-{FLEET}-{inst['InstanceId']}", "state": "running"}


def clients(service):
    return boto3.client(service)


def members(name: str) -> list[str]:
    return [i["InstanceId"] for i in clients("autoscaling").describe_auto_scaling_groups(
        AutoScalingGroupNames=[name])["AutoScalingGroups"][0]["Instances"]]


@pytest.fixture
def loop(aws, tmp_path, monkeypatch):
    ids = World(clients, FleetSpec(name=FLEET, size=2, groups=parse_groups("api:1:fixed:tg=second"))).ensure()
    ports = {"web": emulator.free_port(), "second": emulator.free_port()}
    state = FleetState(tmp_path, {
        "name": FLEET, "endpoint": aws.endpoint_url, "region": aws.region, "network": "none", "image": "none",
        "public_network": "none", "lb_port": ports["web"], "lb_ports": ports, **ids})
    state.save()
    fake = FakeContainers(tmp_path / "haproxy.cfg")
    monkeypatch.setattr(fleetd.containers, "list_fleet", fake.list_fleet)
    monkeypatch.setattr(fleetd.containers, "remove", fake.remove)
    reconciler = fleetd.Reconciler(state)
    reconciler.launch = fake.launch
    clock = Clock()
    reconciler.target_sync.clock = clock
    healthy: set[str] = set()  # the IPs whose health check passes

    class Now:
        def submit(self, fn, *args):
            from concurrent.futures import Future
            future = Future()
            future.set_result(fn(*args))
            return future

    reconciler.initial = standins.InitialHealth(
        reconciler.elbv2, probe=lambda url, timeout: 200 if url.split("/")[2].split(":")[0] in healthy else 0,
        clock=clock, executor=Now())
    try:
        yield reconciler, fake, clock, healthy, ports
    finally:
        reconciler.balancer.stop()
        reconciler.pool.shutdown(wait=True)


def ips() -> dict[str, str]:
    found = {}
    for res in clients("ec2").describe_instances()["Reservations"]:
        for inst in res["Instances"]:
            if inst["State"]["Name"] == "running":
                found[inst["InstanceId"]] = inst["PrivateIpAddress"]
    return found


def settle(reconciler, clock, ticks=3):
    for _ in range(ticks):
        reconciler.tick()
        reconciler.pool.shutdown(wait=True)  # let the (fake) launches finish
        reconciler.pool = fleetd.ThreadPoolExecutor(max_workers=2)
        clock.now += 1


def test_every_group_served_and_a_terminated_instance_drains_before_its_container_goes(loop):
    reconciler, fake, clock, healthy, ports = loop
    web, api = members("web"), members("api")
    settle(reconciler, clock)
    assert set(fake.rows) == set(ips())  # every instance (bastion too) has a container
    status = reconciler.state.read_status()
    assert status["target_groups"] == {"web": {}, "second": {}}  # nothing answers its health check yet
    healthy.update(ips().values())
    settle(reconciler, clock)
    status = reconciler.state.read_status()
    # The web target group has the web group's instances; the api group is on the second one.
    assert set(status["target_groups"]["web"]) == set(web)
    assert set(status["target_groups"]["second"]) == set(api)
    assert status["backends"] == status["target_groups"]["web"]
    config = reconciler.balancer.config.read_text()
    assert f"bind 127.0.0.1:{ports['web']}" in config and f"bind 127.0.0.1:{ports['second']}" in config
    assert all(f"server {iid} " in config for iid in web + api)

    victim = web[0]
    clients("autoscaling").terminate_instance_in_auto_scaling_group(InstanceId=victim, ShouldDecrementDesiredCapacity=False)
    (replacement,) = set(members("web")) - set(web)
    reconciler.tick()
    config = reconciler.balancer.config.read_text()
    assert f"server {victim} " not in config  # no new request from now on
    assert victim in fake.rows  # but its container stays: the requests it holds finish
    assert reconciler.state.read_status()["draining"] == [victim]
    assert f"server {replacement} " not in config  # booting, not healthy yet
    clock.now += 4
    settle(reconciler, clock, ticks=1)
    assert victim in fake.rows and replacement in fake.rows
    clock.now += 1
    reconciler.tick()
    assert [iid for iid, _ in fake.removed] == [victim]
    assert f"server {victim} " not in fake.removed[0][1]  # the balancer had let it go before
    assert reconciler.state.read_status()["draining"] == []
    healthy.add(ips()[replacement])
    settle(reconciler, clock, ticks=4)  # a probe from before it answered, then two that pass
    assert set(reconciler.state.read_status()["target_groups"]["web"]) == set(members("web"))


def test_an_instance_terminated_in_standby_goes_at_once(loop):
    reconciler, fake, clock, healthy, _ = loop
    healthy.update(ips().values())
    settle(reconciler, clock, ticks=4)
    asg = clients("autoscaling")
    host = members("web")[1]
    asg.enter_standby(AutoScalingGroupName="web", InstanceIds=[host], ShouldDecrementDesiredCapacity=True)
    reconciler.tick()
    assert host not in reconciler.state.read_status()["backends"] and host in fake.rows
    clock.now += 5
    reconciler.tick()  # drained and deregistered
    asg.terminate_instance_in_auto_scaling_group(InstanceId=host, ShouldDecrementDesiredCapacity=True)
    reconciler.tick()
    assert host not in fake.rows  # nothing to drain: it had no traffic


def test_a_tick_evaluates_the_emulators_alarms_now_and_then(loop):
    reconciler, _fake, _clock, healthy, _ = loop
    cloudwatch = clients("cloudwatch")
    # No data at all, treated as breaching: CloudWatch would put it in ALARM; moto leaves it OK.
    cloudwatch.put_metric_alarm(AlarmName="web-heartbeat", Namespace="AWS/ApplicationELB", MetricName="RequestCount",
                                Dimensions=[{"Name": "LoadBalancer", "Value": "app/nowhere/1"}], Statistic="Sum",
                                Period=10, EvaluationPeriods=1, Threshold=1, ComparisonOperator="LessThanThreshold",
                                TreatMissingData="breaching")
    healthy.update(ips().values())
    reconciler.tick()
    found = cloudwatch.describe_alarms(AlarmNames=["web-heartbeat"])["MetricAlarms"][0]
    assert found["StateValue"] == "ALARM"
    assert found["StateReason"] == ("Threshold Crossed: no datapoints were received for 1 period and 1 missing "
                                    "datapoint was treated as [Breaching].")
    cloudwatch.set_alarm_state(AlarmName="web-heartbeat", StateValue="OK", StateReason="by hand")
    reconciler.tick()  # within the interval: not evaluated again
    assert cloudwatch.describe_alarms(AlarmNames=["web-heartbeat"])["MetricAlarms"][0]["StateValue"] == "OK"
    reconciler.alarms_due = 0
    reconciler.tick()  # as on AWS, the next evaluation overrides a state set by hand
    assert cloudwatch.describe_alarms(AlarmNames=["web-heartbeat"])["MetricAlarms"][0]["StateValue"] == "ALARM"


def test_containers_are_listed_again_only_when_something_may_have_changed_them(loop, monkeypatch):
    """docker ps at every half-second tick kept dockerd the busiest process on the machine: the
    listing is reused while the instances and their states stay the same, and taken again when
    they change, when a launch ends, or after CONTAINERS_REFRESH seconds."""
    reconciler, fake, clock, _, _ = loop
    calls = []
    listing = fake.list_fleet
    monkeypatch.setattr(fleetd.containers, "list_fleet", lambda fleet: calls.append(fleet) or listing(fleet))
    monkeypatch.setattr(fleetd, "CONTAINERS_REFRESH", 3600)
    settle(reconciler, clock)  # launches end: listed again after them
    assert set(fake.rows) == set(ips())
    calls.clear()
    settle(reconciler, clock, ticks=5)
    assert calls == []  # nothing changed: no listing
    victim = members("web")[0]
    clients("autoscaling").terminate_instance_in_auto_scaling_group(InstanceId=victim, ShouldDecrementDesiredCapacity=False)
    reconciler.tick()
    assert calls == [FLEET]  # the instances changed
    monkeypatch.setattr(fleetd, "CONTAINERS_REFRESH", 0)
    calls.clear()
    reconciler.tick()
    reconciler.tick()
    assert calls == [FLEET, FLEET]  # the listing's age alone

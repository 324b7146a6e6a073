"""The capacity-aware deploy planner (module_utils/deploy_plan.py, filter ec2fleet.fleet.deploy_plan):
the per-(ASG, AZ) share, min_healthy and MinSize under each capacity mode, surges, refusals, hosts
left alone, recovered Standby hosts, the canary, determinism; bakes, checkpoints and zonal waves; a
property test over many random fleets checks every invariant on every batch, in both strategies;
and once through Ansible itself. No emulator needed."""

from __future__ import annotations

import math
import random
from collections import Counter

import pytest
from ansible_collections.ec2fleet.fleet.plugins.filter import deploy_batches as fb
from ansible_collections.ec2fleet.fleet.plugins.filter import deploy_plan as fp
from ansible_collections.ec2fleet.fleet.plugins.module_utils.deploy_plan import (
    MAX_GROUPS,
    natural_key,
    parse_amount,
    plan_deploy,
    resolve,
)
from deploy_support import run_tasks

# --- building fleets ---------------------------------------------------------------------------


class Fleet:
    """Hosts and groups as the playbook passes them: every host InService, Healthy, on ``version``."""

    def __init__(self, region="us-east-1"):
        self.region = region
        self.hosts = []
        self.groups = {}

    def group(self, name, per_az, min_size=0, max_size=None, version="1.0", **extra):
        """An ASG with ``per_az`` ({"a": 2, "b": 3}) InService instances, desired = their count."""
        instances = []
        for az, count in per_az.items():
            for n in range(1, count + 1):
                instance = self.host(f"{name}-{az}-{n}", az, asg=name, version=version)
                instances.append({"instance_id": instance["instance_id"], "lifecycle_state": "InService",
                                  "health_status": "Healthy", "availability_zone": instance["az"]})
        desired = len(instances)
        self.groups[name] = {"min_size": min_size, "max_size": desired if max_size is None else max_size,
                             "desired_capacity": desired, "desired_capacity_type": None,
                             "load_balancer_names": [], "target_group_arns": [f"arn:tg/{name}"],
                             "instances": instances, **extra}
        return self.groups[name]

    def host(self, name, az, asg=None, version="1.0", region=None):
        host = {"name": name, "instance_id": f"i-{name}", "region": region or self.region,
                "az": f"{region or self.region}{az}", "asg": asg, "current_version": version,
                "lifecycle_state": "InService" if asg else None, "health_status": "Healthy" if asg else None}
        self.hosts.append(host)
        return host

    def instance(self, name):
        for group in self.groups.values():
            for instance in group["instances"]:
                if instance["instance_id"] == f"i-{name}":
                    return instance
        raise KeyError(name)

    def set_state(self, name, state, decrement=True):
        """Put an instance in ``state`` (host and group); ``decrement`` lowers desired as AWS does
        for EnterStandby (ShouldDecrementDesiredCapacity) and terminations."""
        instance = self.instance(name)
        instance["lifecycle_state"] = state
        next(h for h in self.hosts if h["name"] == name)["lifecycle_state"] = state
        if decrement:
            group = next(g for g in self.groups.values() if instance in g["instances"])
            group["desired_capacity"] -= 1

    def plan(self, **settings):
        return plan_deploy(self.hosts, self.groups, {"version": "2.0", **settings})


def az_of(host_name):
    return host_name.split("-")[-2]


def refused(plan, *words):
    return [line for line in plan["refusals"] if all(w in line for w in words)]


# --- the fixes over deploy_batches -------------------------------------------------------------


def test_share_is_per_group_and_az_not_pooled():
    """Groups of 4 and 20: the small group never loses more than its own share of an AZ at once."""
    fleet = Fleet()
    fleet.group("small", {"a": 2, "b": 2})
    fleet.group("big", {"a": 10, "b": 10})
    plan = fleet.plan(batch_size="25%", max_az_share="50%")
    assert plan["refusals"] == []
    assert [len(b) for b in plan["batches"]] == [1, 6, 6, 6, 5]
    for batch in plan["batches"]:
        small = Counter(az_of(n) for n in batch if n.startswith("small-"))
        assert all(count <= 1 for count in small.values()), batch  # 50% of the 2 in each AZ
        assert sum(small.values()) <= 2  # min_healthy 50% of 4
    # deploy_batches (same code, no capacity rules) keeps the per-pair share too; before, pooling
    # the AZs of both groups, its last batch took all 4 of the small group's hosts.
    capacity_blind = fb.deploy_batches(fleet.hosts, "2.0", batch_size="25%", max_az_share="50%")
    for batch in capacity_blind["batches"]:
        assert max(Counter(az_of(n) for n in batch if n.startswith("small-")).values(), default=0) <= 1
    assert sorted(n for b in plan["batches"] for n in b) == sorted(h["name"] for h in fleet.hosts)


def test_deploy_batches_is_the_same_code():
    fleet = Fleet()
    fleet.group("web", {"a": 3, "b": 3}, min_size=0)
    plan = fleet.plan(batch_size=2, min_healthy=0, max_az_share="50%")
    assert fb.deploy_batches(fleet.hosts, "2.0", batch_size=2, max_az_share="50%") == {
        "skipped": plan["skipped"], "batches": plan["batches"]}
    # force as the string -e deploy_force=false gives
    fleet.hosts[0]["current_version"] = "2.0"
    assert fb.deploy_batches(fleet.hosts, "2.0", force="false")["skipped"] == ["web-a-1"]
    assert fb.deploy_batches(fleet.hosts, "2.0", force="true")["skipped"] == []


# --- capacity modes ----------------------------------------------------------------------------


def fixed_group(min_healthy="50%"):
    fleet = Fleet()
    fleet.group("fixed", {"a": 2, "b": 2}, min_size=4, max_size=4)
    return fleet, dict(batch_size=2, max_az_share="50%", min_healthy=min_healthy, canary=1)


def test_fixed_size_group_auto_lowers_min_size():
    fleet, settings = fixed_group()
    plan = fleet.plan(capacity="auto", **settings)
    assert plan["refusals"] == []
    assert plan["batches"] == [["fixed-a-1"], ["fixed-a-2", "fixed-b-1"], ["fixed-b-2"]]
    assert plan["capacity"] == {"fixed": {"original": {"min_size": 4, "max_size": 4, "desired_capacity": 4},
                                          "during": {"min_size": 2, "max_size": 4, "desired_capacity": 4},
                                          "surge": 0}}
    assert plan["min_healthy"] == {"fixed": 2}


def test_fixed_size_group_reduce_lowers_min_size_only():
    fleet, settings = fixed_group()
    plan = fleet.plan(capacity="reduce", **settings)
    assert plan["refusals"] == []
    assert plan["capacity"]["fixed"]["during"] == {"min_size": 2, "max_size": 4, "desired_capacity": 4}


def test_fixed_size_group_surge_keeps_desired_in_service():
    fleet, settings = fixed_group()
    plan = fleet.plan(capacity="surge", **settings)
    assert plan["refusals"] == []
    largest = max(len(b) for b in plan["batches"])
    assert plan["capacity"] == {"fixed": {"original": {"min_size": 4, "max_size": 4, "desired_capacity": 4},
                                          "during": {"min_size": 4, "max_size": 4 + largest,
                                                     "desired_capacity": 4 + largest},
                                          "surge": largest}}
    assert largest == 2


def test_fixed_size_group_none_is_refused():
    fleet, settings = fixed_group()
    plan = fleet.plan(capacity="none", **settings)
    assert plan["capacity"] == {}
    assert refused(plan, "ASG fixed", "DesiredCapacity 4 is at MinSize 4", "capacity=")


def test_none_plans_around_min_size_when_it_can():
    fleet = Fleet()
    fleet.group("web", {"a": 3, "b": 3}, min_size=5, max_size=6)  # one host out at a time
    plan = fleet.plan(capacity="none", batch_size=4, max_az_share="100%", min_healthy=0)
    assert plan["refusals"] == [] and plan["capacity"] == {}
    assert all(len(b) == 1 for b in plan["batches"])


def test_fixed_size_group_with_min_healthy_100_percent():
    fleet, settings = fixed_group("100%")
    auto = fleet.plan(capacity="auto", **settings)
    assert auto["refusals"] == []
    assert auto["capacity"]["fixed"] == {"original": {"min_size": 4, "max_size": 4, "desired_capacity": 4},
                                         "during": {"min_size": 4, "max_size": 5, "desired_capacity": 5},
                                         "surge": 1}
    assert all(len(b) == 1 for b in auto["batches"])
    assert refused(fleet.plan(capacity="reduce", **settings), "ASG fixed", "min_healthy 4", "surge of 1",
                   "MaxSize 4 to at least 5")


def test_two_host_group_min_healthy_75_percent():
    fleet = Fleet()
    fleet.group("pair", {"a": 1, "b": 1}, min_size=1, max_size=2)
    auto = fleet.plan(min_healthy="75%", capacity="auto", batch_size=2)
    assert auto["refusals"] == []
    assert auto["min_healthy"] == {"pair": 2}  # 1.5 rounded up
    assert auto["capacity"] == {"pair": {"original": {"min_size": 1, "max_size": 2, "desired_capacity": 2},
                                         "during": {"min_size": 1, "max_size": 3, "desired_capacity": 3},
                                         "surge": 1}}
    assert auto["batches"] == [["pair-a-1"], ["pair-b-1"]]
    reduce = fleet.plan(min_healthy="75%", capacity="reduce", batch_size=2)
    assert refused(reduce, "ASG pair", "min_healthy 2", "capacity=auto or surge, now reduce")
    assert reduce["capacity"] == {}


def test_min_healthy_as_a_count():
    fleet = Fleet()
    fleet.group("web", {"a": 3, "b": 3})
    plan = fleet.plan(min_healthy=4, batch_size=6, max_az_share="100%", canary=0)
    assert plan["min_healthy"] == {"web": 4}
    assert [len(b) for b in plan["batches"]] == [2, 2, 2]
    assert fleet.plan(min_healthy=10, capacity="reduce")["min_healthy"] == {"web": 6}  # at most desired


# --- refusals ----------------------------------------------------------------------------------


def test_weighted_capacity_is_refused():
    fleet = Fleet()
    fleet.group("weighted", {"a": 2}, desired_capacity_type="vcpu")
    assert refused(fleet.plan(), "ASG weighted", "desired_capacity_type vcpu")
    fleet = Fleet()
    fleet.group("weights", {"a": 2})
    fleet.instance("weights-a-1")["weighted_capacity"] = "4"
    assert refused(fleet.plan(), "ASG weights", "weighted capacity", "weights-a-1")
    fleet = Fleet()
    fleet.group("units", {"a": 2}, desired_capacity_type="units")
    fleet.instance("units-a-1")["weighted_capacity"] = "1"
    assert fleet.plan()["refusals"] == []


def test_classic_elb_is_refused():
    fleet = Fleet()
    fleet.group("legacy", {"a": 2}, load_balancer_names=["legacy-clb"])
    assert refused(fleet.plan(), "ASG legacy", "Classic Load Balancers", "legacy-clb")


def test_two_regions_are_refused():
    fleet = Fleet()
    fleet.group("east", {"a": 2})
    fleet.host("west-1", "a", region="eu-west-1")
    assert refused(fleet.plan(), "2 regions", "eu-west-1, us-east-1", "deploy one region at a time: -e deploy_target=")


def test_more_than_twenty_groups_are_refused():
    fleet = Fleet()
    for n in range(MAX_GROUPS + 1):
        fleet.group(f"g{n}", {"a": 1})
    plan = fleet.plan(min_healthy=0)
    assert refused(plan, f"{MAX_GROUPS + 1} Auto Scaling groups", "split the deploy with deploy_target")
    del fleet.groups["g20"]
    fleet.hosts = [h for h in fleet.hosts if h["asg"] != "g20"]
    assert fleet.plan(min_healthy=0)["refusals"] == []
    # Groups whose hosts are all on the version already do not count.
    fleet.group("done", {"a": 1}, version="2.0")
    assert fleet.plan(min_healthy=0)["refusals"] == []


def test_group_not_at_desired_capacity_or_unhealthy_is_refused():
    fleet = Fleet()
    fleet.group("web", {"a": 3})
    fleet.groups["web"]["desired_capacity"] = 4
    fleet.groups["web"]["instances"].append({"instance_id": "i-new", "lifecycle_state": "Pending",
                                             "health_status": "Healthy", "availability_zone": "us-east-1a"})
    assert refused(fleet.plan(), "ASG web", "not at desired capacity", "DesiredCapacity 4", "3 InService", "1 Pending")
    fleet = Fleet()
    fleet.group("web", {"a": 3})
    fleet.instance("web-a-2")["health_status"] = "Unhealthy"
    plan = fleet.plan()
    assert refused(plan, "ASG web", "unhealthy InService instances (i-web-a-2)")
    assert "web-a-2" not in [h["name"] for h in plan["left_alone"]]  # refused, not left alone


def test_unknown_group_and_stale_host_are_refused():
    fleet = Fleet()
    fleet.group("web", {"a": 2})
    fleet.host("ghost-1", "a", asg="ghost")
    fleet.host("gone-1", "a", asg="web")  # the inventory still has it, the group does not
    plan = fleet.plan()
    assert refused(plan, "ASG ghost", "ghost-1", "not described")
    assert refused(plan, "host gone-1", "not an instance of ASG web", "--flush-cache")
    assert {"name": "gone-1", "instance_id": "i-gone-1", "reason": "not an instance of ASG web (any more)"} \
        in plan["left_alone"]


def test_unhealthy_host_outside_any_group_is_refused():
    fleet = Fleet()
    fleet.host("solo-1", "a")["health_status"] = "Unhealthy"
    assert refused(fleet.plan(), "host solo-1", "Unhealthy")


# --- hosts left alone, recovered Standby ------------------------------------------------------


def test_operator_standby_and_terminating_hosts_are_left_alone():
    fleet = Fleet()
    fleet.group("web", {"a": 3, "b": 3})
    fleet.set_state("web-a-1", "Standby")
    fleet.set_state("web-b-2", "Terminating:Wait")
    fleet.set_state("web-b-3", "Pending:Wait", decrement=False)
    fleet.groups["web"]["desired_capacity"] += 0
    plan = fleet.plan(min_healthy=0, batch_size=10, max_az_share="100%")
    assert plan["left_alone"] == [
        {"name": "web-a-1", "instance_id": "i-web-a-1",
         "reason": "Standby, not left by an interrupted deploy (an operator's: exit Standby to deploy it)"},
        {"name": "web-b-2", "instance_id": "i-web-b-2", "reason": "lifecycle state Terminating:Wait"},
        {"name": "web-b-3", "instance_id": "i-web-b-3", "reason": "lifecycle state Pending:Wait"},
    ]
    assert sorted(n for b in plan["batches"] for n in b) == ["web-a-2", "web-a-3", "web-b-1"]
    # The Pending instance counts in the desired capacity but is not InService yet: not ready.
    assert refused(plan, "ASG web", "not at desired capacity", "1 Pending:Wait")
    fleet.set_state("web-b-3", "InService", decrement=False)
    assert fleet.plan(min_healthy=0)["refusals"] == []


def test_recovered_standby_is_redeployed_and_not_counted():
    fleet = Fleet()
    fleet.group("web", {"a": 2, "b": 2}, min_size=2, max_size=4)
    fleet.set_state("web-a-1", "Standby")  # an interrupted run: desired 4 -> 3
    fleet.hosts[0]["current_version"] = "2.0"  # it may even be on the new version already
    fleet.set_state("web-b-2", "Standby")  # an operator's, also decremented: desired 2
    settings = dict(min_healthy="50%", batch_size=3, max_az_share="100%", canary=0, recovered_standby=["i-web-a-1"])
    plan = fleet.plan(**settings)
    assert plan["refusals"] == []
    assert plan["skipped"] == []
    assert [h["name"] for h in plan["left_alone"]] == ["web-b-2"]
    assert plan["min_healthy"] == {"web": 1}  # 50% of desired 2
    # web-a-1 does not count against min_healthy: with it, one InService host per batch.
    assert plan["batches"] == [["web-a-1", "web-b-1"], ["web-a-2"]]
    # Back InService it raises desired to 3, which MaxSize 4 holds; MinSize 2 with one host out
    # would take desired to 1, so MinSize is lowered for the rollout.
    assert plan["capacity"]["web"]["during"] == {"min_size": 1, "max_size": 4, "desired_capacity": 2}
    fleet.groups["web"]["max_size"] = 2
    assert refused(fleet.plan(capacity="reduce", **settings), "ASG web", "returning 1 instance left in Standby",
                   "MaxSize 3 (now 2)")
    assert fleet.plan(capacity="auto", **settings)["capacity"]["web"]["during"]["max_size"] == 3


# --- canary, determinism -----------------------------------------------------------------------


def test_canary_comes_from_the_largest_group():
    fleet = Fleet()
    fleet.group("a-small", {"a": 2, "b": 1})
    fleet.group("b-big", {"a": 3, "b": 2})
    plan = fleet.plan(canary=2, batch_size=4, min_healthy=0)
    assert plan["canary"] == 2
    assert plan["batches"][0] == ["b-big-a-1", "b-big-b-1"]
    assert fleet.plan(canary=0, min_healthy=0)["canary"] == 0
    # Everything in the canary batch: one batch, no canary.
    fleet = Fleet()
    fleet.group("web", {"a": 1})
    assert fleet.plan(canary=1)["batches"] == [["web-a-1"]]
    assert fleet.plan(canary=1)["canary"] == 0


def test_canary_is_capped_by_batch_size():
    fleet = Fleet()
    fleet.group("web", {"a": 4, "b": 4})
    plan = fleet.plan(canary=3, batch_size=2, min_healthy=0)
    assert plan["canary"] == 2 and len(plan["batches"][0]) == 2


def test_same_input_same_plan():
    fleet = Fleet()
    fleet.group("web10", {"a": 4, "b": 3, "c": 2})
    fleet.group("web2", {"a": 2, "c": 5})
    fleet.host("solo-10", "a")
    fleet.host("solo-9", "b")
    settings = dict(batch_size="30%", max_az_share="50%", min_healthy="60%", canary=2)
    plan = fleet.plan(**settings)
    rng = random.Random(7)
    for _ in range(10):
        hosts = list(fleet.hosts)
        rng.shuffle(hosts)
        groups = {}
        for name in rng.sample(list(fleet.groups), len(fleet.groups)):
            instances = list(fleet.groups[name]["instances"])
            rng.shuffle(instances)
            groups[name] = dict(fleet.groups[name], instances=instances)
        assert plan_deploy(hosts, groups, {"version": "2.0", **settings}) == plan
    names = [n for b in plan["batches"] for n in b]
    assert all(b == sorted(b, key=natural_key) for b in plan["batches"])
    assert "solo-9" in names and "solo-10" in names


# --- bad arguments -----------------------------------------------------------------------------


@pytest.mark.parametrize("settings, message", [
    ({}, "target version is required"),
    ({"version": "2", "colour": "red"}, "unknown settings"),
    ({"version": "2", "capacity": "more"}, "capacity must be one of auto, reduce, surge, none"),
    ({"version": "2", "min_healthy": "101%"}, "min_healthy must be a count of at least 0"),
    ({"version": "2", "min_healthy": -1}, "min_healthy must be"),
    ({"version": "2", "batch_size": "0%"}, "batch_size must be a count of at least 1"),
    ({"version": "2", "canary": -1}, "canary must be 0 or more"),
    ({"version": "2", "recovered_standby": "i-1"}, "recovered_standby must be a list"),
    ({"version": "2", "force": "perhaps"}, "force must be a boolean"),
    ({"version": "2", "strategy": "waves"}, "strategy must be one of batches, zonal"),
    ({"version": "2", "bake_seconds": -1}, "bake_seconds must be whole numbers of at least 0"),
    ({"version": "2", "canary_bake_seconds": "long"}, "canary_bake_seconds must be whole numbers"),
    ({"version": "2", "checkpoints": [10, 100]}, "checkpoints must be whole numbers from 1 to 99"),
    ({"version": "2", "checkpoints": "50"}, "checkpoints must be a list"),
    ({"version": "2", "zonal_min_healthy_percent": 100}, "zonal_min_healthy_percent must be whole numbers from 0"),
])
def test_bad_settings_fail_clearly(settings, message):
    fleet = Fleet()
    fleet.group("web", {"a": 1})
    with pytest.raises(fp.AnsibleFilterError, match=message):
        fp.deploy_plan(fleet.hosts, fleet.groups, settings)


def test_bad_hosts_and_groups_fail_clearly():
    with pytest.raises(fp.AnsibleFilterError, match="listed twice"):
        fp.deploy_plan([{"name": "a"}, {"name": "a"}], {}, version="2")
    with pytest.raises(fp.AnsibleFilterError, match="no instance_id"):
        fp.deploy_plan([{"name": "a", "asg": "web"}], {}, version="2")
    with pytest.raises(fp.AnsibleFilterError, match="needs whole numbers"):
        fp.deploy_plan([], {"web": {"instances": []}}, version="2")


def test_groups_as_autoscaling_group_info_results():
    fleet = Fleet()
    fleet.group("web", {"a": 2, "b": 2})
    results = [dict(g, auto_scaling_group_name=name) for name, g in fleet.groups.items()]
    assert plan_deploy(fleet.hosts, results, {"version": "2.0"}) == fleet.plan()


# --- bakes, checkpoints, zonal waves ------------------------------------------------------------


def web_fleet(per_az=None):
    fleet = Fleet()
    fleet.group("web", per_az or {"a": 4, "b": 4}, min_size=0)
    return fleet


def test_without_bake_settings_nothing_bakes_and_the_plan_is_as_before():
    plan = web_fleet().plan(batch_size=2, min_healthy=0)
    assert plan["strategy"] == "batches" and plan["zones"] == [] and plan["checkpoints"] == []
    assert plan["bake"] == [0] * len(plan["batches"])


def test_the_canary_bakes_longer_and_every_batch_bakes_the_last_too():
    plan = web_fleet().plan(batch_size=2, min_healthy=0, bake_seconds=60, canary_bake_seconds=300)
    assert [len(b) for b in plan["batches"]] == [1, 2, 2, 2, 1]
    assert plan["bake"] == [300, 60, 60, 60, 60]
    # No canary batch (everything fits in one batch): nothing bakes as a canary.
    single = web_fleet({"a": 1}).plan(batch_size=2, min_healthy=0, bake_seconds=60, canary_bake_seconds=300)
    assert single["canary"] == 0 and single["bake"] == [60]


def test_a_checkpoint_is_the_first_batch_boundary_at_or_past_its_percentage():
    plan = web_fleet().plan(batch_size=2, min_healthy=0, checkpoints=[10, 12, 50, 63, 99],
                            bake_seconds=30, canary_bake_seconds=120)
    # 8 hosts in batches of 1, 2, 2, 2, 1: the boundaries are at 1, 3, 5, 7 and 8 hosts.
    assert plan["checkpoints"] == [
        {"number": 1, "batch": 1, "percents": [10, 12], "hosts": 1, "of": 8},
        {"number": 2, "batch": 3, "percents": [50], "hosts": 5, "of": 8},
        {"number": 3, "batch": 4, "percents": [63], "hosts": 7, "of": 8},
    ]  # 99% is reached only by the last batch: the rollout is over there, no pause
    assert plan["bake"] == [120, 30, 120, 120, 30]


def test_zonal_deploys_one_az_after_the_other_the_canary_first_and_the_first_az_monitored_longer():
    fleet = Fleet()
    fleet.group("web", {"c": 3, "a": 4, "b": 2}, min_size=0)
    fleet.group("api", {"a": 1, "c": 2}, min_size=0)
    plan = fleet.plan(strategy="zonal", batch_size="50%", max_az_share="100%", min_healthy=0, canary=1,
                      bake_seconds=60, canary_bake_seconds=300, zonal_monitor_seconds=900)
    assert plan["refusals"] == [] and plan["canary"] == 1
    assert plan["batches"] == [
        ["web-a-1"],  # the canary: the first AZ's largest group
        ["api-a-1", "web-a-2"], ["web-a-3", "web-a-4"],  # batches of 50% of the AZ's 5 hosts
        ["web-b-1"], ["web-b-2"],  # 50% of 2
        ["api-c-1", "web-c-1"], ["api-c-2", "web-c-2"], ["web-c-3"],
    ]
    assert plan["zones"] == [
        {"az": "us-east-1a", "batches": [1, 3], "monitor": 900},
        {"az": "us-east-1b", "batches": [4, 5], "monitor": 60},
        {"az": "us-east-1c", "batches": [6, 8], "monitor": 60},
    ]
    assert plan["bake"] == [300, 60, 900, 60, 60, 60, 60, 60]


def test_zonal_keeps_each_azs_minimum_of_healthy_hosts():
    fleet = Fleet()
    fleet.group("web", {"a": 4, "b": 4}, min_size=0)
    fleet.hosts[0]["current_version"] = "2.0"  # skipped, still serving in its AZ
    plan = fleet.plan(strategy="zonal", batch_size="100%", max_az_share="100%", min_healthy=0, canary=0,
                      zonal_min_healthy_percent=50)
    assert plan["refusals"] == []
    # 4 serve in each AZ, 2 must stay: 2 out at once.
    assert plan["batches"] == [["web-a-2", "web-a-3"], ["web-a-4"], ["web-b-1", "web-b-2"], ["web-b-3", "web-b-4"]]


def test_zonal_refuses_an_az_whose_minimum_keeps_every_host_in():
    fleet = Fleet()
    fleet.group("web", {"a": 1, "b": 3}, min_size=0)
    plan = fleet.plan(strategy="zonal", min_healthy=0, zonal_min_healthy_percent=60)
    assert refused(plan, "AZ us-east-1a", "zonal_min_healthy_percent 60 keeps 1 of its 1 targeted hosts")
    assert len(plan["refusals"]) == 1  # 3 serve in b: 2 stay, 1 may leave


def test_what_the_plan_adds_stays_small_whatever_the_fleet():
    fleet = Fleet()
    fleet.group("web", {"a": 400, "b": 400, "c": 400}, min_size=0)
    for strategy in ("batches", "zonal"):
        plan = fleet.plan(strategy=strategy, batch_size="10%", min_healthy=0, checkpoints=[10, 25, 50, 75],
                          bake_seconds=60, canary_bake_seconds=300)
        assert len(plan["bake"]) == len(plan["batches"]) <= 40
        assert len(plan["zones"]) <= 3 and len(plan["checkpoints"]) <= 4
        extras = {k: plan[k] for k in ("strategy", "bake", "checkpoints", "zones")}
        assert len(repr(extras)) < 1500, strategy


# --- the property test -------------------------------------------------------------------------


def random_fleet(rng):
    """A fleet fit for a deploy (one region, at desired capacity, healthy, units, no CLB) with random
    groups, AZs, sizes, MinSize/MaxSize, hosts on the version, Standby and Terminating hosts."""
    fleet = Fleet()
    recovered = []
    for g in range(rng.randint(1, 6)):
        name = f"asg{rng.randint(1, 40)}x{g}"
        azs = rng.sample("abcd", rng.randint(1, 3))
        group = fleet.group(name, {az: rng.randint(1, 12) for az in azs})
        members = [h for h in fleet.hosts if h["asg"] == name]
        for host in members:
            roll = rng.random()
            if roll < 0.15:
                host["current_version"] = "2.0"
            elif roll < 0.2:
                fleet.set_state(host["name"], "Standby")
                if rng.random() < 0.6:
                    recovered.append(host["instance_id"])
            elif roll < 0.23:
                fleet.set_state(host["name"], rng.choice(["Terminating", "Terminating:Wait", "Detaching"]))
        desired = group["desired_capacity"]
        group["min_size"] = rng.choice([0, desired // 2, desired, max(desired - 1, 0)])
        group["max_size"] = desired + rng.choice([0, 0, 1, 3, 10]) + sum(
            1 for h in members if h["instance_id"] in recovered)
    for n in range(rng.choice([0, 0, 3])):
        fleet.host(f"solo-{n}", rng.choice("ab"), version=rng.choice(["1.0", "2.0"]))

    def amount(low, high):
        return rng.choice([rng.randint(low, high), f"{rng.randint(max(low, 1) * 5, 100)}%"])

    settings = {
        "version": "2.0",
        "force": rng.random() < 0.1,
        "canary": rng.choice([0, 1, 1, 2, 3]),
        "batch_size": amount(1, 12),
        "max_az_share": amount(1, 6),
        "min_healthy": rng.choice([0, 1, 2, "0%", "25%", "50%", "50%", "75%", "90%", "100%"]),
        "capacity": rng.choice(["auto", "reduce", "surge", "none"]),
        "recovered_standby": recovered,
        "strategy": rng.choice(["batches", "batches", "zonal"]),
        "checkpoints": sorted(rng.sample(range(1, 100), rng.choice([0, 0, 1, 2, 3]))),
        "zonal_min_healthy_percent": rng.choice([0, 0, 25, 50, 75]),
        "bake_seconds": rng.choice([0, 30]),
        "canary_bake_seconds": rng.choice([0, 300]),
        "zonal_monitor_seconds": rng.choice([0, 900]),
    }
    if rng.random() < 0.3:  # sometimes with a max_size too small for the recovered hosts' return
        name = rng.choice(sorted(fleet.groups))
        fleet.groups[name]["max_size"] = fleet.groups[name]["desired_capacity"]
    return fleet, settings


def check_plan(fleet, settings, plan):
    """Every invariant, derived again from the inputs (not from the planner's own numbers)."""
    hosts = {h["name"]: h for h in fleet.hosts}
    recovered = set(settings["recovered_standby"])
    group_instance = {i["instance_id"]: i for g in fleet.groups.values() for i in g["instances"]}

    def state(host):
        return group_instance[host["instance_id"]]["lifecycle_state"] if host["asg"] else None

    def already_out(host):
        return host["instance_id"] in recovered and state(host) == "Standby"

    # A partition: every host planned, skipped or left alone, exactly once.
    planned = [n for b in plan["batches"] for n in b]
    alone = [h["name"] for h in plan["left_alone"]]
    assert sorted(planned + plan["skipped"] + alone) == sorted(hosts)
    assert len(set(planned)) == len(planned)
    expected_alone = {n for n, h in hosts.items() if h["asg"] and state(h) != "InService" and not already_out(h)}
    assert set(alone) == expected_alone
    expected_skipped = {n for n, h in hosts.items() if n not in expected_alone and not settings["force"]
                        and h["instance_id"] not in recovered and h["current_version"] == "2.0"}
    assert set(plan["skipped"]) == expected_skipped
    assert all(h["reason"] for h in plan["left_alone"])

    # Sizes, shares, canary.
    zonal = settings.get("strategy") == "zonal"
    size = resolve(parse_amount(settings["batch_size"], "b"), len(planned))
    share = parse_amount(settings["max_az_share"], "s")
    pair_total = Counter((hosts[n]["asg"], hosts[n]["az"]) for n in planned)
    group_total = Counter(hosts[n]["asg"] for n in planned)
    for batch in plan["batches"]:
        assert batch and batch == sorted(batch, key=natural_key)
        assert len(batch) <= size
        for pair, count in Counter((hosts[n]["asg"], hosts[n]["az"]) for n in batch).items():
            assert count <= resolve(share, pair_total[pair]), (pair, batch)
    # The canary comes from the largest group (zonal: of the first AZ).
    canary_total = group_total
    if zonal:
        check_zones(fleet, settings, plan, hosts, already_out)
        if plan["batches"]:
            first_az = hosts[plan["batches"][0][0]]["az"]
            canary_total = Counter(hosts[n]["asg"] for n in planned if hosts[n]["az"] == first_az)
    check_bakes_and_checkpoints(settings, plan)
    if plan["canary"]:
        assert settings["canary"] and len(plan["batches"]) > 1
        assert plan["canary"] == len(plan["batches"][0]) <= min(settings["canary"], size)
        largest = max(canary_total.values())
        canary_groups = {hosts[n]["asg"] for n in plan["batches"][0]}
        assert len(canary_groups) == 1
        assert canary_total[canary_groups.pop()] == largest
    else:
        assert not settings["canary"] or len(plan["batches"]) <= 1
    if settings["canary"] and len(plan["batches"]) > 1:
        assert plan["canary"]
    assert recovered & {h["instance_id"] for h in hosts.values() if already_out(h)} <= \
        {hosts[n]["instance_id"] for n in planned}

    # Capacity, per group with hosts to deploy.
    mode = settings["capacity"]
    min_healthy = parse_amount(settings["min_healthy"], "m", minimum=0)
    expect_refused = set()
    assert set(plan["min_healthy"]) == {g for g in group_total if g}
    for name in plan["min_healthy"]:
        group = fleet.groups[name]
        desired, min_size, max_size = group["desired_capacity"], group["min_size"], group["max_size"]
        in_service = sum(1 for i in group["instances"] if i["lifecycle_state"] == "InService")
        assert in_service == desired  # random_fleet keeps groups at desired capacity
        kind, number = min_healthy
        keep = min(number, desired) if kind == "count" else math.ceil(desired * number / 100 - 1e-9)
        assert plan["min_healthy"][name] == keep
        outs = [sum(1 for n in b if hosts[n]["asg"] == name and not already_out(hosts[n])) for b in plan["batches"]]
        back = sum(1 for n in planned if hosts[n]["asg"] == name and already_out(hosts[n]))
        takes_out = sum(outs) > 0
        room = in_service - keep
        change = plan["capacity"].get(name)
        surge = change["surge"] if change else 0
        during = change["during"] if change else {"min_size": min_size, "max_size": max_size,
                                                  "desired_capacity": desired}
        if change:
            assert change["original"] == {"min_size": min_size, "max_size": max_size, "desired_capacity": desired}
            assert change["during"] != change["original"]
        assert during["desired_capacity"] == desired + surge
        if mode in ("none", "reduce") and takes_out and room < 1:
            expect_refused.add(name)
        if mode == "none" and takes_out and desired - min_size < 1:
            expect_refused.add(name)
        if mode in ("none", "reduce") and desired + back > max_size:
            expect_refused.add(name)
        if name in expect_refused:
            assert any(f"ASG {name}" in line for line in plan["refusals"]), (name, plan["refusals"])
            continue
        # The plan may run: InService never below min_healthy, desired never below MinSize nor
        # above MaxSize, whatever the batch.
        for out in outs:
            assert out <= in_service + surge - keep
            assert desired + surge - out >= during["min_size"]
        assert during["max_size"] >= desired + surge + back
        assert during["min_size"] <= min_size and during["max_size"] >= max_size
        if mode == "none":
            assert change is None
        elif mode == "reduce":
            assert surge == 0 and during["max_size"] == max_size
        elif mode == "surge":
            assert surge == max(outs) and during["min_size"] == min_size
            assert all(in_service + surge - out >= desired for out in outs)
        else:  # auto: a surge only where one host out would breach min_healthy
            assert surge == (1 - room if takes_out and room < 1 else 0)
    assert all(any(f"ASG {name}" in line for line in plan["refusals"]) for name in expect_refused)
    expect_refused |= {line for line in plan["refusals"] if line.startswith("AZ ")}
    if not expect_refused:
        assert plan["refusals"] == []
    return bool(expect_refused)


def check_zones(fleet, settings, plan, hosts, already_out):
    """Zonal: each batch in one AZ, each AZ's batches together, AZs in natural order, the per-AZ
    minimum of serving hosts kept (or the AZ refused), the first AZ monitored longer."""
    batch_azs = [{hosts[n]["az"] for n in batch} for batch in plan["batches"]]
    assert all(len(azs) == 1 for azs in batch_azs)
    order = [azs.pop() for azs in batch_azs]
    waves = [az for index, az in enumerate(order) if index == 0 or order[index - 1] != az]
    assert waves == sorted(set(order), key=natural_key)  # contiguous, in natural order
    assert [z["az"] for z in plan["zones"]] == waves
    for index, zone in enumerate(plan["zones"]):
        first, last = zone["batches"]
        assert set(order[first - 1:last]) == {zone["az"]} and (index or first == 1)
        assert zone["monitor"] == (settings["zonal_monitor_seconds"] if index == 0 else settings["bake_seconds"])
    percent = settings["zonal_min_healthy_percent"]
    if percent:
        planned = {n for b in plan["batches"] for n in b}
        for az in waves:
            serving = sum(1 for n, h in hosts.items() if h["az"] == az and (n in plan["skipped"] or (
                n in planned and not already_out(h))))
            room = serving - math.ceil(serving * percent / 100 - 1e-9)
            leaving = [n for n in planned if hosts[n]["az"] == az and not already_out(hosts[n])]
            if room < 1 and leaving:
                assert refused(plan, f"AZ {az}", "zonal_min_healthy_percent"), (az, plan["refusals"])
                continue
            for batch in plan["batches"]:
                assert sum(1 for n in batch if hosts[n]["az"] == az and not already_out(hosts[n])) <= room


def check_bakes_and_checkpoints(settings, plan):
    batches = plan["batches"]
    bake = settings.get("bake_seconds", 0)
    canary_bake = settings.get("canary_bake_seconds", 0)
    assert len(plan["bake"]) == len(batches)
    done = [sum(len(b) for b in batches[:n]) for n in range(1, len(batches) + 1)]
    total = done[-1] if done else 0
    expected = {}
    for percent in settings.get("checkpoints", []):
        number = next(n for n, d in enumerate(done, start=1) if d * 100 >= percent * total)
        if number < len(batches):
            expected.setdefault(number, []).append(percent)
    assert [(c["batch"], c["percents"], c["hosts"], c["of"]) for c in plan["checkpoints"]] == [
        (n, p, done[n - 1], total) for n, p in sorted(expected.items())]
    assert [c["number"] for c in plan["checkpoints"]] == list(range(1, len(expected) + 1))
    for number, seconds in enumerate(plan["bake"], start=1):
        wanted = [bake]
        if number == 1 and plan["canary"]:
            wanted.append(canary_bake)
        if number in expected:
            wanted.append(canary_bake)
        wanted += [z["monitor"] for z in plan["zones"] if z["batches"][1] == number]
        assert seconds == max(wanted), (number, plan["bake"])


def test_every_invariant_on_random_fleets():
    rng = random.Random(20240611)
    refused_plans = surged = lowered = zonal = 0
    for _ in range(400):
        fleet, settings = random_fleet(rng)
        plan = plan_deploy(fleet.hosts, fleet.groups, settings)
        refused_plans += check_plan(fleet, settings, plan)
        surged += any(c["surge"] for c in plan["capacity"].values())
        lowered += any(c["during"]["min_size"] < c["original"]["min_size"] for c in plan["capacity"].values())
        zonal += len(plan["zones"]) > 1 and not plan["refusals"]
        # Determinism: the same fleet in another order gives the same plan.
        shuffled = list(fleet.hosts)
        rng.shuffle(shuffled)
        assert plan_deploy(shuffled, dict(reversed(list(fleet.groups.items()))), settings) == plan
    # The generator reaches every branch often enough to mean something.
    assert refused_plans > 40 and surged > 40 and lowered > 40 and zonal > 40, (refused_plans, surged, lowered, zonal)


# --- through Ansible ---------------------------------------------------------------------------


def test_through_ansible():
    """Playbooks call it by its FQCN, with a settings dict or keywords, groups as a dict or the
    autoscaling_group_info results list."""
    fleet = Fleet()
    fleet.group("web", {"a": 2, "b": 2}, min_size=4, max_size=4)
    results = [dict(g, auto_scaling_group_name=name) for name, g in fleet.groups.items()]
    first, second = run_tasks([
        {"name": "plan", "ansible.builtin.set_fact": {
            "plan": "{{ hosts_in | ec2fleet.fleet.deploy_plan(groups_in, {'version': '2.0', 'batch_size': '50%'}) }}"},
         "vars": {"hosts_in": fleet.hosts, "groups_in": fleet.groups}},
        {"name": "plan with keywords", "ansible.builtin.set_fact": {
            "plan2": "{{ hosts_in | ec2fleet.fleet.deploy_plan(results_in, version='2.0', capacity='none') }}"},
         "vars": {"hosts_in": fleet.hosts, "results_in": results}},
    ])
    assert first["ansible_facts"]["plan"] == fleet.plan(batch_size="50%")
    assert first["ansible_facts"]["plan"]["capacity"]["web"]["during"]["min_size"] == 2
    assert second["ansible_facts"]["plan2"] == fleet.plan(capacity="none")
    assert refused(second["ansible_facts"]["plan2"], "ASG web", "MinSize 4")

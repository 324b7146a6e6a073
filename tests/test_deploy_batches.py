"""The fleet_batches filter: skipping, canary, batch sizes by count and percentage (rounding),
the per-AZ share cap, AZ spread, determinism; and once through Ansible itself."""

from __future__ import annotations

from collections import Counter

import pytest
from ansible_collections.ec2fleet.fleet.plugins.filter import deploy_batches as fb
from deploy_support import run_tasks

batches_of = fb.deploy_batches


def hosts(spec, version="1.0", asg="web"):
    """spec: {"a": 4, "b": 4} -> hosts web-a-1.. with that many per AZ, all on ``version``."""
    return [{"name": f"{asg}-{az}-{n}", "az": f"us-east-1{az}", "asg": asg, "current_version": version}
            for az, count in spec.items() for n in range(1, count + 1)]


def az_of(name):
    return "us-east-1" + name.split("-")[1]


def check_invariants(plan, host_list, version, force, cap_for):
    """What must hold for every plan: a partition of the target set, no AZ over its cap."""
    names = [h["name"] for h in host_list]
    planned = [n for batch in plan["batches"] for n in batch]
    assert sorted(planned + plan["skipped"]) == sorted(names)
    assert len(set(planned)) == len(planned)
    expected_skipped = [] if force else [h["name"] for h in host_list if h.get("current_version") == version]
    assert sorted(plan["skipped"]) == sorted(expected_skipped)
    targets = Counter(az_of(n) for n in planned)
    for batch in plan["batches"]:
        assert batch, "no empty batch"
        for az, count in Counter(az_of(n) for n in batch).items():
            assert count <= cap_for(targets[az]), (batch, az)


def test_canary_first_then_batches_spread_over_azs():
    plan = batches_of(hosts({"a": 4, "b": 4}), "2.0", batch_size=2)
    assert plan["skipped"] == []
    assert plan["batches"] == [
        ["web-a-1"],
        ["web-a-2", "web-b-1"],
        ["web-a-3", "web-b-2"],
        ["web-a-4", "web-b-3"],
        ["web-b-4"],
    ]


def test_hosts_on_the_version_are_skipped_unless_forced():
    host_list = hosts({"a": 2, "b": 2})
    host_list[0]["current_version"] = "2.0"
    host_list[3]["current_version"] = "2.0"
    plan = batches_of(host_list, "2.0", batch_size=2)
    assert plan["skipped"] == ["web-a-1", "web-b-2"]
    assert plan["batches"] == [["web-a-2"], ["web-b-1"]]
    forced = batches_of(host_list, "2.0", batch_size=2, force=True)
    assert forced["skipped"] == [] and sum(map(len, forced["batches"])) == 4


def test_all_skipped():
    assert batches_of(hosts({"a": 3}, version="2.0"), "2.0") == {"skipped": ["web-a-1", "web-a-2", "web-a-3"],
                                                                  "batches": []}


def test_empty_input():
    assert batches_of([], "2.0") == {"skipped": [], "batches": []}


def test_one_host():
    assert batches_of(hosts({"a": 1}), "2.0", batch_size="50%") == {"skipped": [], "batches": [["web-a-1"]]}
    assert batches_of(hosts({"a": 1}), "2.0", canary=0) == {"skipped": [], "batches": [["web-a-1"]]}


@pytest.mark.parametrize("batch_size, total, expected", [
    ("25%", 8, 2), ("25%", 7, 1), ("25%", 3, 1), ("30%", 10, 3), ("33%", 9, 2), ("100%", 5, 5),
    ("12.5%", 8, 1), ("50%", 1, 1), (3, 10, 3), ("3", 10, 3), (20, 5, 5),
])
def test_batch_size_rounds_down_with_a_minimum_of_one(batch_size, total, expected):
    plan = batches_of(hosts({"a": total}), "2.0", canary=0, batch_size=batch_size, max_az_share="100%")
    assert len(plan["batches"][0]) == min(expected, total)
    assert [len(b) for b in plan["batches"][:-1]] == [min(expected, total)] * (len(plan["batches"]) - 1)


def test_percentage_is_of_the_hosts_to_deploy_not_of_all_hosts():
    host_list = hosts({"a": 8})
    for h in host_list[:4]:
        h["current_version"] = "2.0"
    plan = batches_of(host_list, "2.0", canary=0, batch_size="50%", max_az_share="100%")
    assert [len(b) for b in plan["batches"]] == [2, 2]


@pytest.mark.parametrize("share, per_az, cap", [
    ("50%", 4, 2), ("50%", 3, 1), ("50%", 1, 1), ("34%", 3, 1), ("67%", 3, 2), ("100%", 3, 3), (2, 6, 2), ("1", 6, 1),
])
def test_az_share_caps_each_batch(share, per_az, cap):
    plan = batches_of(hosts({"a": per_az, "b": per_az}), "2.0", canary=1, batch_size=100, max_az_share=share)
    for batch in plan["batches"]:
        assert max(Counter(az_of(n) for n in batch).values()) <= cap
    # The canary came from AZ a; batch 2 (asked for 100 hosts) is limited by the cap alone.
    expected = {"us-east-1a": min(cap, per_az - 1), "us-east-1b": min(cap, per_az)}
    assert Counter(az_of(n) for n in plan["batches"][1]) == {az: n for az, n in expected.items() if n}


def test_uneven_azs_use_each_azs_own_share():
    # 6 hosts in a, 2 in b: at 50%, a may lose 3 at once, b only 1.
    plan = batches_of(hosts({"a": 6, "b": 2}), "2.0", canary=0, batch_size=8, max_az_share="50%")
    assert plan["batches"] == [["web-a-1", "web-a-2", "web-a-3", "web-b-1"], ["web-a-4", "web-a-5", "web-a-6", "web-b-2"]]


def test_canary_larger_than_one_is_spread_and_capped():
    plan = batches_of(hosts({"a": 2, "b": 2, "c": 2}), "2.0", canary=3, batch_size=3)
    assert plan["batches"][0] == ["web-a-1", "web-b-1", "web-c-1"]
    capped = batches_of(hosts({"a": 4}), "2.0", canary=3, batch_size=4, max_az_share="25%")
    assert capped["batches"] == [["web-a-1"], ["web-a-2"], ["web-a-3"], ["web-a-4"]]


def test_hosts_without_az_form_their_own_group():
    host_list = [{"name": "solo-1"}, {"name": "solo-2", "az": None, "current_version": None}]
    plan = batches_of(host_list, "2.0", canary=0, batch_size=2, max_az_share="50%")
    assert plan["batches"] == [["solo-1"], ["solo-2"]]


def test_natural_order_and_determinism():
    host_list = [{"name": f"web-{n}", "az": "us-east-1a", "current_version": "1"} for n in (10, 2, 1, 11, 3)]
    plan = batches_of(host_list, "2", canary=1, batch_size=2, max_az_share="100%")
    assert plan["batches"] == [["web-1"], ["web-2", "web-3"], ["web-10", "web-11"]]
    assert batches_of(list(reversed(host_list)), "2", canary=1, batch_size=2, max_az_share="100%") == plan


@pytest.mark.parametrize("spec, batch_size, share, canary", [
    ({"a": 10, "b": 7, "c": 3}, "25%", "50%", 1),
    ({"a": 50, "b": 50, "c": 50}, "20%", "34%", 2),
    ({"a": 1, "b": 9}, 4, "50%", 1),
    ({"a": 33, "b": 1}, "10%", "10%", 0),
    ({"a": 5, "b": 5, "c": 5, "d": 5}, 20, 1, 1),
    ({"a": 200, "b": 173}, "5%", "25%", 1),
])
def test_many_hosts_keep_every_invariant(spec, batch_size, share, canary):
    host_list = hosts(spec)
    for n, h in enumerate(host_list):  # every 7th host is already done
        if n % 7 == 3:
            h["current_version"] = "2.0"
    plan = batches_of(host_list, "2.0", canary=canary, batch_size=batch_size, max_az_share=share)
    amount = fb.parse_amount(share, "share")
    check_invariants(plan, host_list, "2.0", False, lambda n: fb.resolve(amount, n))
    if canary:
        assert len(plan["batches"][0]) == canary
    size = fb.resolve(fb.parse_amount(batch_size, "size"), sum(map(len, plan["batches"])))
    assert all(len(b) <= size for b in plan["batches"][1 if canary else 0:])


@pytest.mark.parametrize("kwargs, message", [
    ({"batch_size": "0%"}, "batch_size must be a count of at least 1 or a percentage"),
    ({"batch_size": "150%"}, "batch_size must be"),
    ({"batch_size": 0}, "batch_size must be"),
    ({"batch_size": "lots"}, "batch_size must be"),
    ({"batch_size": True}, "batch_size must be"),
    ({"max_az_share": "-5%"}, "max_az_share must be"),
    ({"canary": -1}, "canary must be 0 or more"),
    ({"canary": "x"}, "canary must be a whole number"),
])
def test_bad_parameters_fail_clearly(kwargs, message):
    with pytest.raises(fb.AnsibleFilterError, match=message):
        batches_of(hosts({"a": 2}), "2.0", **kwargs)


def test_bad_hosts_fail_clearly():
    with pytest.raises(fb.AnsibleFilterError, match="listed twice"):
        batches_of([{"name": "a"}, {"name": "a"}], "2.0")
    with pytest.raises(fb.AnsibleFilterError, match="every host needs a name"):
        batches_of([{"az": "x"}], "2.0")
    with pytest.raises(fb.AnsibleFilterError, match="target version is required"):
        batches_of([{"name": "a"}], "")


def test_through_ansible():
    """Playbooks call it by its FQCN, ec2fleet.fleet.deploy_batches."""
    result, = run_tasks([{"name": "plan", "ansible.builtin.set_fact": {
        "plan": "{{ hosts_in | ec2fleet.fleet.deploy_batches('2.0', batch_size='50%', max_az_share='50%') }}"},
        "vars": {"hosts_in": hosts({"a": 2, "b": 2})}}])
    assert result["ansible_facts"]["plan"] == {"skipped": [], "batches": [["web-a-1"], ["web-a-2", "web-b-1"], ["web-b-2"]]}

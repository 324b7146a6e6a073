"""ec2_fleet and amazon.aws.aws_ec2, configured equivalently, see the same hosts and groups."""

from __future__ import annotations

import inventory_fleet as fleet
import pytest
from inventory_support import REPO, all_hosts, inventory_list, run_cli, write_config

pytestmark = pytest.mark.emulator

REGIONS = ["us-east-1", "eu-west-1"]


def test_same_host_set_and_keyed_groups_as_aws_ec2(aws, tmp_path):
    fleets = fleet.build_fleet(REGIONS, per_region=12, asgs_per_region=2)
    # Also a stopped instance: both must leave it out for the equivalent states/filter.
    extra = fleet.run_instances(REGIONS[0], fleets[0].private_subnets[0], tags={"Name": "stopped-one", "Role": "web"})
    import boto3

    boto3.client("ec2", region_name=REGIONS[0]).stop_instances(InstanceIds=extra)

    ours = write_config(tmp_path, {
        "plugin": "ec2fleet.fleet.ec2_fleet", "regions": REGIONS, "hostnames": ["tag:Name", "instance-id"],
        "keyed_groups": [{"key": "ec2_tags.Role", "prefix": "tag_role"},
                         {"key": "ec2_availability_zone", "prefix": "zone"}],
        "compose": {"ansible_host": "ec2_private_ip_address"},
    })
    theirs = write_config(tmp_path, {
        "plugin": "amazon.aws.aws_ec2", "regions": REGIONS, "hostnames": ["tag:Name", "instance-id"],
        "filters": {"instance-state-name": "running"},
        "keyed_groups": [{"key": "tags.Role", "prefix": "tag_role"},
                         {"key": "placement.availability_zone", "prefix": "zone"}],
        "compose": {"ansible_host": "private_ip_address"},
    }, suffix="aws_ec2.yml")

    a, b = inventory_list(ours), inventory_list(theirs)
    expected = {name for f in fleets for name in f.names.values()}
    assert len(expected) == 24
    assert all_hosts(a) == all_hosts(b) == expected
    for group in ("tag_role_web", "tag_role_worker", "tag_role_bastion"):
        assert sorted(a[group]["hosts"]) == sorted(b[group]["hosts"]), group
    zones = {g for g in b if g.startswith("zone_")}
    assert zones and all(sorted(a[z]["hosts"]) == sorted(b[z]["hosts"]) for z in zones)
    for host in expected:
        assert a["_meta"]["hostvars"][host]["ansible_host"] == b["_meta"]["hostvars"][host]["ansible_host"]

    # The operator's view: the same host list from `ansible all --list-hosts`.
    listed = []
    for path in (ours, theirs):
        proc = run_cli("ansible", "all", "-i", str(path), "--list-hosts")
        assert proc.returncode == 0, proc.stderr
        listed.append(sorted(line.strip() for line in proc.stdout.splitlines()[1:]))
    assert listed[0] == listed[1] == sorted(expected)


def test_accounts_file_matches_aws_ec2_one_file_per_account(aws, tmp_path):
    """What the benchmark compares at 10,000 instances, at a small size: ec2_fleet's one file with
    accounts and aws_ec2's one file per account, given to one command, see the same fleet."""
    import importlib.util
    import json

    spec = importlib.util.spec_from_file_location("bench_inventory", REPO / "bench" / "inventory_vs_aws_ec2.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    accounts = bench.ACCOUNTS[:2]
    names = set()
    for n, account in enumerate(accounts, 1):
        with fleet.in_account(account):
            built = fleet.build_fleet(REGIONS, per_region=5, asgs_per_region=2, prefix=f"a{n}")
        names |= {name for f in built for name in f.names.values()}
    variants = bench.inventory_configs(REGIONS, tmp_path / "cache", accounts)
    listings = {}
    for label in ("aws_ec2", "ec2_fleet"):
        sources = []
        for i, (config, suffix) in enumerate(variants[label]["uncached"]):
            path = tmp_path / f"{label}_{i}.{suffix}"
            path.write_text(json.dumps(config))
            sources += ["-i", str(path)]
        proc = run_cli("ansible-inventory", *sources, "--list")
        assert proc.returncode == 0, proc.stderr
        listings[label] = json.loads(proc.stdout)
    assert len(variants["aws_ec2"]["uncached"]) == 2 and len(variants["ec2_fleet"]["uncached"]) == 1
    assert len(names) == 20
    assert all_hosts(listings["aws_ec2"]) == all_hosts(listings["ec2_fleet"]) == names
    for group in ("tag_role_web", "tag_role_worker", "tag_env_prod"):
        assert sorted(listings["aws_ec2"][group]["hosts"]) == sorted(listings["ec2_fleet"][group]["hosts"]), group
    assert sorted(listings["ec2_fleet"]["account_a2"]["hosts"]) == sorted(n for n in names if n.startswith(("bastion-a2", "web-a2")))

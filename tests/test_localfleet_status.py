"""A local fleet of several groups through the real inventory, as `tools/fleet status` reads it:
hostnames from each group's Name tag, every group's instances in role_web, one row per group."""

from __future__ import annotations

import boto3
import pytest
from inventory_support import cli_env, write_config

from ec2fleet import ops
from ec2fleet.localfleet.world import FleetSpec, World, parse_groups

pytestmark = pytest.mark.emulator


def test_every_group_in_the_inventory_and_the_status_groups_table(aws, tmp_path):
    World(lambda s: boto3.client(s), FleetSpec(name="st", size=2, groups=parse_groups("api:2:fixed:tg=second"))).ensure()
    path = write_config(tmp_path, {
        "plugin": "ec2fleet.fleet.ec2_fleet", "regions": ["us-east-1"], "filters": {"tag:ec2fleet:fleet": "st"},
        "hostnames": [{"name": "instance-id", "prefix": "tag:Name", "separator": "-"}], "target_groups": True})
    inv = ops.Inventory(str(path), cli_env())
    role_web = {h.name for h in inv.select("role_web")}
    assert len(role_web) == 4
    assert {n.split("-i-")[0] for n in role_web} == {"web", "api"}
    assert {h.name for h in inv.select("asg_api")} == {n for n in role_web if n.startswith("api-")}
    rows = ops.group_rows(inv)
    assert rows == [
        {"asg": "api", "region": "us-east-1", "min/desired/max": "2/2/30", "size": "fixed", "in service": "2 of 2",
         "target groups": "st-second"},
        {"asg": "web", "region": "us-east-1", "min/desired/max": "0/2/30", "size": "-", "in service": "2 of 2",
         "target groups": "st-web"},
    ]
    assert ops.table(rows).splitlines()[0].split() == ["ASG", "REGION", "MIN/DESIRED/MAX", "SIZE", "IN", "SERVICE",
                                                       "TARGET", "GROUPS"]

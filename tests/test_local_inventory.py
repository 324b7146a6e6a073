"""inventory/local.ec2_fleet.yml keeps the ec2_fleet plugin's own wiring (issue 17): the bastion at
the public address the emulator reports (its Elastic IP), the other hosts at their private address
through the plugin's ProxyCommand hop with the options `tools/fleet env` exports; compose only adds
the login and the destination's known_hosts file."""

from __future__ import annotations

import shlex

import boto3
import pytest
import yaml
from inventory_support import REPO, inventory_list

from ec2fleet.localfleet.state import FleetState
from ec2fleet.localfleet.world import FleetSpec, World, public_network
from ec2fleet.ops import plain

INVENTORY = REPO / "inventory" / "local.ec2_fleet.yml"


def test_compose_adds_to_the_wiring_and_replaces_none_of_it():
    compose = yaml.safe_load(INVENTORY.read_text())["compose"]
    assert set(compose) == {"ansible_user", "ansible_ssh_private_key_file", "ansible_ssh_common_args"}
    # The plugin's value comes first, then the known_hosts file for the destination.
    assert compose["ansible_ssh_common_args"].lstrip("( ").startswith("ansible_ssh_common_args | default('')")


@pytest.mark.emulator
def test_the_local_fleet_is_wired_by_the_plugin(aws, tmp_path):
    ids = World(boto3.client, FleetSpec(name="local", size=2)).ensure()
    state = FleetState(tmp_path, {"name": "local", "endpoint": aws.endpoint_url, "region": aws.region, **ids})
    env = state.env()
    listing = inventory_list(INVENTORY, env=env)
    hostvars = plain(listing["_meta"]["hostvars"])
    address = public_network("local").bastion
    known_hosts = f"-o UserKnownHostsFile={state.known_hosts_path}"
    (bastion,) = [h for h, v in hostvars.items() if v["ec2_is_bastion"]]
    assert hostvars[bastion]["ansible_host"] == address == hostvars[bastion]["ec2_public_ip_address"]
    assert "ansible_port" not in hostvars[bastion]
    assert hostvars[bastion]["ansible_ssh_common_args"] == known_hosts
    web = [v for v in hostvars.values() if not v["ec2_is_bastion"]]
    assert len(web) == 2
    hop = f"ssh -W %h:%p {env['EC2FLEET_BASTION_SSH_ARGS']} admin@{address}"
    for host in web:
        assert host["ansible_host"] == host["ec2_private_ip_address"]
        assert host["ansible_ssh_common_args"] == f'-o ProxyCommand="{hop}" {known_hosts}'
        assert host["ansible_user"] == "admin" and host["ansible_ssh_private_key_file"] == str(state.key_path)
    # The hop checks the bastion strictly against the fleet's known_hosts, with the fleet's key.
    args = shlex.split(env["EC2FLEET_BASTION_SSH_ARGS"])
    assert "StrictHostKeyChecking=yes" in args and f"UserKnownHostsFile={state.known_hosts_path}" in args
    assert args[args.index("-i") + 1] == str(state.key_path)

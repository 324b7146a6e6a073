"""The ops layer behind the Fabric tasks reads hosts from the real `ansible-inventory --list`
of an ec2_fleet file (against the emulator): values must come out as plain strings, not
ansible-core 2.19's {"__ansible_unsafe": ...} trust markers, whether the inventory was answered
by AWS or by the plugin's cache."""

from __future__ import annotations

import subprocess

import pytest
from inventory_fleet import add_asg, add_bastion, make_network, name_instances
from inventory_support import cli_env, write_config

from ec2fleet import ops


def test_plain_unwraps_trust_markers_at_any_depth():
    data = {"a": {"__ansible_unsafe": "web"}, "b": [{"__ansible_unsafe": "x"}, 1, None],
            "c": {"d": {"__ansible_unsafe": "y"}, "e": {"__ansible_unsafe": "z", "other": 1}}}
    assert ops.plain(data) == {"a": "web", "b": ["x", 1, None],
                               "c": {"d": "y", "e": {"__ansible_unsafe": "z", "other": 1}}}


@pytest.fixture
def fleet_file(aws, tmp_path):
    fleet = make_network("us-east-1")
    add_bastion(fleet, "bastion-1")
    ids = add_asg(fleet, "web", 3)
    name_instances(fleet, ids, "web")
    ids = add_asg(fleet, "api", 2, role="api")
    name_instances(fleet, ids, "api")
    path = write_config(tmp_path, {
        "plugin": "ec2fleet.fleet.ec2_fleet", "regions": ["us-east-1"], "cache": True,
        "cache_plugin": "ansible.builtin.jsonfile", "cache_connection": str(tmp_path / "cache"),
    })
    return path


@pytest.mark.parametrize("run", ["aws", "cache"])
def test_inventory_hosts_have_plain_values_and_sort_for_status(fleet_file, run):
    env = cli_env()
    first = ops.Inventory(str(fleet_file), env)
    inventory = ops.Inventory(str(fleet_file), env) if run == "cache" else first
    assert len(inventory.hosts) == 6
    for host in inventory.hosts.values():
        for key in ("ansible_host", "ec2_instance_id", "ec2_availability_zone"):
            assert isinstance(host.vars[key], str), (host.name, key, host.vars[key])
    web = inventory.hosts["web-0001"]
    assert web.vars["asg_name"] == "web"
    assert "asg_web" in web.groups and "bastion" in inventory.hosts["bastion-1"].groups
    # The status table's order: by ASG, then name (a non-ASG bastion first).
    order = sorted(inventory.hosts.values(), key=ops.status_order)
    assert [h.name for h in order] == ["bastion-1", "api-0001", "api-0002", "web-0001", "web-0002", "web-0003"]
    assert [h.name for h in inventory.select("asg_api,bastion-1")] == ["api-0001", "api-0002", "bastion-1"]
    with pytest.raises(SystemExit, match="no host or group matches 'nosuch'"):
        inventory.select("nosuch")


def test_status_summary_counts_the_asg_instances_by_state_health_and_release():
    rows = [
        {"host": "bastion", "asg": "-", "lifecycle": "-", "target health": "-", "release": "-"},
        {"host": "w1", "asg": "web", "lifecycle": "InService", "target health": "healthy", "release": "2.0.0"},
        {"host": "w2", "asg": "web", "lifecycle": "Standby", "target health": "draining", "release": "1.0.0"},
        {"host": "w3", "asg": "web", "lifecycle": "InService", "target health": "healthy", "release": "1.0.0"},
    ]
    assert ops.status_summary(rows) == (
        "3 instance(s) | lifecycle: 2 InService, 1 Standby | targets: 2 healthy, 1 draining | "
        "releases: 2 1.0.0, 1 2.0.0")
    assert ops.status_summary([]) == "0 instance(s) | lifecycle: - | targets: - | releases: -"


def test_the_fleets_address_ranges_are_its_vpcs_cidrs(fleet_file):
    # What `tools/fleet known-hosts` trusts the host CA for when no --ranges is given.
    inventory = ops.Inventory(str(fleet_file), cli_env())
    assert ops.vpc_ranges(list(inventory.hosts.values())) == ["10.0.0.0/16"]
    assert ops.vpc_ranges([ops.Host("static", {})]) == []
    # ...and for the public addresses and DNS names hosts are reached at (the bastion's).
    hosts = list(inventory.hosts.values())
    public = ops.public_addresses(hosts)
    bastion = inventory.hosts["bastion-1"].vars
    assert bastion["ec2_public_ip_address"] and bastion["ec2_public_dns_name"]
    assert {bastion["ec2_public_ip_address"], bastion["ec2_public_dns_name"]} <= set(public)
    assert not {h.vars["ec2_private_ip_address"] for h in hosts} & set(public)
    assert ops.public_addresses([ops.Host("static", {})]) == []


def test_a_session_checks_host_keys_strictly_before_the_inventorys_options():
    # ssh keeps the first value of an option: the strict check comes before anything the inventory adds.
    host = ops.Host("web-1", {"ansible_host": "10.0.1.5", "ansible_user": "admin", "ansible_port": 22,
                              "ansible_ssh_common_args": "-o StrictHostKeyChecking=no -o ProxyJump=admin@203.0.113.9"})
    argv = ops.connection(host).argv("-o", "BatchMode=yes")
    assert argv.index("StrictHostKeyChecking=yes") < argv.index("StrictHostKeyChecking=no")
    assert argv[-3:] == ["-p", "22", "admin@10.0.1.5"] and "ProxyJump=admin@203.0.113.9" in argv


def test_the_inventorys_bastion_hop_reaches_ssh_as_one_argument():
    # What ec2_fleet wires behind a bastion: the whole ProxyCommand is one argument after its -o.
    host = ops.Host("web-1", {"ansible_host": "10.0.1.5", "ansible_user": "admin", "ansible_port": 22,
                              "ansible_ssh_common_args": '-o ProxyCommand="ssh -W %h:%p -o StrictHostKeyChecking=yes'
                                                         ' -p 2222 admin@203.0.113.9"'})
    argv = ops.connection(host).argv()
    proxy = "ProxyCommand=ssh -W %h:%p -o StrictHostKeyChecking=yes -p 2222 admin@203.0.113.9"
    assert argv[argv.index(proxy) - 1] == "-o" and argv[-3:] == ["-p", "22", "admin@10.0.1.5"]


def test_a_command_runs_after_the_destination(monkeypatch):
    seen = []
    monkeypatch.setattr(ops.subprocess, "run", lambda argv, **kw: seen.append(argv) or subprocess.CompletedProcess(argv, 0, "", ""))
    ops.connection(ops.Host("web-1", {"ansible_host": "10.0.1.5", "ansible_user": "admin"})).run("uptime")
    assert seen[0][-2:] == ["admin@10.0.1.5", "uptime"]

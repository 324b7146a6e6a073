"""The ec2_fleet inventory plugin against the emulator: options, groups, ASG data, bastion wiring,
duplicates, filters, cache, skipped regions and every error path (in-process and through the CLI)."""

from __future__ import annotations

import os
import shlex
import shutil

import boto3
import inventory_fleet as fleet
import pytest
import yaml
from ansible.errors import AnsibleError
from inventory_support import (
    REPO,
    CallCounter,
    DenyingEndpoint,
    PoolTracker,
    all_hosts,
    group_hosts,
    hostvars,
    inventory_list,
    parse_inventory,
    recording_program,
    run_cli,
    ssh_through,
    write_config,
)

from ec2fleet.emulator import free_port

pytestmark = pytest.mark.emulator

REGION = "us-east-1"
CURATED = {
    "ec2_instance_id", "ec2_region", "ec2_availability_zone", "ec2_vpc_id", "ec2_subnet_id",
    "ec2_private_ip_address", "ec2_public_ip_address", "ec2_private_dns_name", "ec2_public_dns_name",
    "ec2_instance_type", "ec2_image_id", "ec2_launch_time", "ec2_state", "ec2_key_name",
    "ec2_security_group_ids", "ec2_tags", "asg_name", "asg_lifecycle_state", "asg_health_status",
    "asg_protected_from_scale_in", "asg_launch_template_version", "ec2_is_bastion", "ansible_host",
}


@pytest.fixture
def small_fleet(aws):
    """One region: a VPC with a bastion and two ASGs (web x3, worker x2), named uniquely."""
    net = fleet.make_network(REGION)
    fleet.add_bastion(net, "bastion-1")
    web = fleet.add_asg(net, "web-prod", 3, role="web")
    worker = fleet.add_asg(net, "worker-prod", 2, role="Worker")
    fleet.name_instances(net, web, "web")
    fleet.name_instances(net, worker, "worker")
    return net


def ec2(region=REGION):
    return boto3.client("ec2", region_name=region)


# -- docs ------------------------------------------------------------------------------------

def test_ansible_doc_renders_full_docs_with_examples():
    proc = run_cli("ansible-doc", "-t", "inventory", "ec2fleet.fleet.ec2_fleet")
    assert proc.returncode == 0, proc.stderr
    for word in ("EXAMPLES", "plugin: ec2fleet.fleet.ec2_fleet", "assume_role_arn", "keyed_groups", "cache_plugin",
                 "ssh_via_bastion", "target_group_arns", "asg_lifecycle_state", "ec2_private_ip_address"):
        assert word in proc.stdout, word


# -- groups and hostvars ---------------------------------------------------------------------

def test_default_groups_and_curated_hostvars(small_fleet, tmp_path):
    inventory, _ = parse_inventory(write_config(tmp_path, {"plugin": "ec2fleet.fleet.ec2_fleet", "regions": [REGION]}))
    assert group_hosts(inventory, "bastion") == ["bastion-1"]
    assert group_hosts(inventory, "asg_web_prod") == ["web-0001", "web-0002", "web-0003"]
    assert group_hosts(inventory, "asg_worker_prod") == ["worker-0001", "worker-0002"]
    assert group_hosts(inventory, "role_web") == ["web-0001", "web-0002", "web-0003"]
    assert group_hosts(inventory, "role_worker") == ["worker-0001", "worker-0002"]  # tag "Worker", lower-cased
    assert len(group_hosts(inventory, "env_prod")) == 6
    assert len(group_hosts(inventory, "region_us_east_1")) == 6
    zones = [g for g in inventory.groups if g.startswith("az_us_east_1")]
    assert zones and sum(len(group_hosts(inventory, z)) for z in zones) == 6

    web = hostvars(inventory, "web-0001")
    assert set(web) >= CURATED
    assert web["ec2_region"] == REGION
    assert web["ec2_vpc_id"] == small_fleet.vpc_id
    assert web["ec2_subnet_id"] in small_fleet.private_subnets
    assert web["ec2_state"] == "running"
    assert web["ec2_tags"]["Role"] == "web"
    assert web["ec2_instance_id"] in small_fleet.asgs["web-prod"]
    assert web["asg_name"] == "web-prod"
    assert web["asg_lifecycle_state"] == "InService"
    assert web["asg_health_status"] == "Healthy"
    assert web["asg_protected_from_scale_in"] is False
    assert web["asg_launch_template_version"] == "1"
    assert isinstance(web["ec2_launch_time"], str) and web["ec2_launch_time"][:2] == "20"
    assert "target_group_arns" not in web
    # Curated means curated: no raw description fields.
    assert "instance_id" not in web and "placement" not in web
    bastion = hostvars(inventory, "bastion-1")
    assert bastion["asg_name"] is None and bastion["ec2_is_bastion"] is True


def test_asg_lifecycle_health_protection(small_fleet, tmp_path):
    autoscaling = boto3.client("autoscaling", region_name=REGION)
    standby, protected, unhealthy = small_fleet.asgs["web-prod"]
    autoscaling.enter_standby(AutoScalingGroupName="web-prod", InstanceIds=[standby],
                              ShouldDecrementDesiredCapacity=True)
    autoscaling.set_instance_protection(AutoScalingGroupName="web-prod", InstanceIds=[protected],
                                        ProtectedFromScaleIn=True)
    autoscaling.set_instance_health(InstanceId=unhealthy, HealthStatus="Unhealthy")
    inventory, _ = parse_inventory(write_config(tmp_path, {"plugin": "ec2fleet.fleet.ec2_fleet", "regions": [REGION]}))
    by_id = {h.vars["ec2_instance_id"]: h.vars for h in inventory.hosts.values()}
    assert by_id[standby]["asg_lifecycle_state"] == "Standby"
    assert by_id[protected]["asg_protected_from_scale_in"] is True
    assert by_id[protected]["asg_lifecycle_state"] == "InService"
    assert by_id[unhealthy]["asg_health_status"] == "Unhealthy"


def test_asg_off_default_groups_subset_and_custom_tags(small_fleet, tmp_path):
    config = {"plugin": "ec2fleet.fleet.ec2_fleet", "regions": [REGION], "asg": False,
              "default_groups": ["role", "region"], "role_tag": "Env"}
    inventory, _ = parse_inventory(write_config(tmp_path, config))
    assert "asg_web_prod" not in inventory.groups and "bastion" not in inventory.groups
    assert not any(g.startswith(("az_", "env_")) for g in inventory.groups)
    assert len(group_hosts(inventory, "role_prod")) == 6  # role groups now come from the Env tag
    assert hostvars(inventory, "web-0001")["asg_name"] is None


def test_target_group_membership(small_fleet, tmp_path):
    elbv2 = boto3.client("elbv2", region_name=REGION)
    arn = elbv2.create_target_group(Name="web", Protocol="HTTP", Port=80, VpcId=small_fleet.vpc_id,
                                    TargetType="instance")["TargetGroups"][0]["TargetGroupArn"]
    web_ids = small_fleet.asgs["web-prod"]
    elbv2.register_targets(TargetGroupArn=arn, Targets=[{"Id": i, "Port": 80} for i in web_ids[:2]])
    inventory, _ = parse_inventory(write_config(tmp_path, {"plugin": "ec2fleet.fleet.ec2_fleet", "regions": [REGION],
                                                           "target_groups": True}))
    by_id = {h.vars["ec2_instance_id"]: h.vars for h in inventory.hosts.values()}
    assert by_id[web_ids[0]]["target_group_arns"] == [arn]
    assert by_id[web_ids[1]]["target_group_arns"] == [arn]
    assert by_id[web_ids[2]]["target_group_arns"] == []


def test_full_description_adds_every_field(small_fleet, tmp_path):
    config = {"plugin": "ec2fleet.fleet.ec2_fleet", "regions": [REGION], "full_description": True}
    inventory, _ = parse_inventory(write_config(tmp_path, config))
    web = hostvars(inventory, "web-0001")
    assert web["instance_id"] == web["ec2_instance_id"]
    assert web["placement"]["region"] == REGION
    assert web["tags"]["Name"] == "web-0001"
    assert web["network_interfaces"][0]["subnet_id"] == web["ec2_subnet_id"]
    assert isinstance(web["launch_time"], str)
    assert set(web) >= CURATED


# -- bastion wiring --------------------------------------------------------------------------

STRICT = "-o StrictHostKeyChecking=yes"  # bastion_ssh_args' default


def test_bastion_hop_per_vpc(aws, tmp_path):
    a = fleet.make_network(REGION, cidr="10.1.0.0/16")
    b = fleet.make_network(REGION, cidr="10.2.0.0/16")
    c = fleet.make_network(REGION, cidr="10.3.0.0/16")  # no bastion here
    bastion_a = fleet.add_bastion(a, "bastion-a")
    bastion_b = fleet.add_bastion(b, "bastion-b")
    fleet.run_instances(REGION, a.private_subnets[0], tags={"Name": "app-a"})
    fleet.run_instances(REGION, b.private_subnets[0], tags={"Name": "app-b"})
    fleet.run_instances(REGION, c.private_subnets[0], tags={"Name": "app-c"})
    fleet.run_instances(REGION, a.public_subnets[0], tags={"Name": "edge-a"}, public=True)
    ips = {i["InstanceId"]: i.get("PublicIpAddress") for r in ec2().describe_instances()["Reservations"]
           for i in r["Instances"]}

    inventory, _ = parse_inventory(write_config(tmp_path, {"plugin": "ec2fleet.fleet.ec2_fleet", "regions": [REGION]}))
    assert group_hosts(inventory, "bastion") == ["bastion-a", "bastion-b"]
    assert hostvars(inventory, "bastion-a")["ansible_host"] == ips[bastion_a]
    assert "ansible_ssh_common_args" not in hostvars(inventory, "bastion-a")
    app_a, app_b = hostvars(inventory, "app-a"), hostvars(inventory, "app-b")
    assert app_a["ansible_host"] == app_a["ec2_private_ip_address"]
    # The hop checks the bastion strictly; port 22 and no bastion_user: no -p, no user@.
    assert app_a["ansible_ssh_common_args"] == f'-o ProxyCommand="ssh -W %h:%p {STRICT} {ips[bastion_a]}"'
    assert app_b["ansible_ssh_common_args"] == f'-o ProxyCommand="ssh -W %h:%p {STRICT} {ips[bastion_b]}"'
    # No bastion in its VPC: no jump host invented.
    assert "ansible_ssh_common_args" not in hostvars(inventory, "app-c")
    # A host with a public address connects directly by default...
    edge = hostvars(inventory, "edge-a")
    assert edge["ansible_host"] == edge["ec2_public_ip_address"] and "ansible_ssh_common_args" not in edge

    # ...and through the bastion with ssh_via_bastion=always; user and port are configurable.
    config = {"plugin": "ec2fleet.fleet.ec2_fleet", "regions": [REGION], "ssh_via_bastion": "always",
              "bastion_user": "jump", "bastion_port": 2222}
    inventory, _ = parse_inventory(write_config(tmp_path, config, name="always"))
    edge = hostvars(inventory, "edge-a")
    assert edge["ansible_host"] == edge["ec2_private_ip_address"]
    assert edge["ansible_ssh_common_args"] == f'-o ProxyCommand="ssh -W %h:%p {STRICT} -p 2222 jump@{ips[bastion_a]}"'
    assert hostvars(inventory, "app-b")["ansible_ssh_common_args"] == (
        f'-o ProxyCommand="ssh -W %h:%p {STRICT} -p 2222 jump@{ips[bastion_b]}"')

    config = {"plugin": "ec2fleet.fleet.ec2_fleet", "regions": [REGION], "ssh_via_bastion": "never"}
    inventory, _ = parse_inventory(write_config(tmp_path, config, name="never"))
    assert not any("ansible_ssh_common_args" in h.vars for h in inventory.hosts.values())

    # compose overrides the wiring (what the local fleet does to reach its containers).
    config = {"plugin": "ec2fleet.fleet.ec2_fleet", "regions": [REGION],
              "compose": {"ansible_host": "'127.0.0.1'", "ansible_ssh_common_args": "''"}}
    inventory, _ = parse_inventory(write_config(tmp_path, config, name="compose"))
    assert hostvars(inventory, "app-a")["ansible_host"] == "127.0.0.1"
    assert hostvars(inventory, "app-a")["ansible_ssh_common_args"] == ""


def test_bastion_tag_configurable(aws, tmp_path):
    net = fleet.make_network(REGION)
    fleet.run_instances(REGION, net.public_subnets[0], tags={"Name": "jump", "Bastion": "yes"}, public=True)
    fleet.run_instances(REGION, net.private_subnets[0], tags={"Name": "app"})
    config = {"plugin": "ec2fleet.fleet.ec2_fleet", "regions": [REGION], "bastion_tag_key": "Bastion", "bastion_tag_value": "yes"}
    inventory, _ = parse_inventory(write_config(tmp_path, config))
    assert group_hosts(inventory, "bastion") == ["jump"]
    jump_ip = hostvars(inventory, "jump")["ec2_public_ip_address"]
    assert hostvars(inventory, "app")["ansible_ssh_common_args"] == f'-o ProxyCommand="ssh -W %h:%p {STRICT} {jump_ip}"'


@pytest.fixture
def behind_bastion(aws):
    """One VPC: a bastion and a private host reached through it."""
    net = fleet.make_network(REGION)
    fleet.add_bastion(net, "bastion-1")
    fleet.run_instances(REGION, net.private_subnets[0], tags={"Name": "app"})
    return net


def wired(tmp_path, name, **options):
    """The app host's hostvars and the plugin, for a file with these options."""
    inventory, plugin = parse_inventory(write_config(tmp_path, {"plugin": "ec2fleet.fleet.ec2_fleet", "regions": [REGION],
                                                                "cache": False, **options}, name=name))
    return hostvars(inventory, "app"), hostvars(inventory, "bastion-1")["ec2_public_ip_address"], plugin


def test_bastion_hop_is_one_argument_through_shlex(behind_bastion, tmp_path):
    # Ansible, Mitogen and the ops tools split ansible_ssh_common_args with shlex.
    app, jump_ip, plugin = wired(tmp_path, "port", bastion_user="jump", bastion_port=2222)
    assert shlex.split(app["ansible_ssh_common_args"]) == [
        "-o", f"ProxyCommand=ssh -W %h:%p -o StrictHostKeyChecking=yes -p 2222 jump@{jump_ip}"]
    assert shlex.split(plugin._bastion_hop("1.2.3.4")) == [
        "-o", "ProxyCommand=ssh -W %h:%p -o StrictHostKeyChecking=yes -p 2222 jump@1.2.3.4"]
    # bastion_user empty, port 22: neither user@ nor -p.
    app, jump_ip, _ = wired(tmp_path, "plain", bastion_user="", bastion_port=22)
    assert shlex.split(app["ansible_ssh_common_args"]) == ["-o", f"ProxyCommand=ssh -W %h:%p -o StrictHostKeyChecking=yes {jump_ip}"]


def test_bastion_ssh_args_pass_through_as_written(behind_bastion, tmp_path):
    custom = "-o StrictHostKeyChecking=yes -o UserKnownHostsFile='/etc/fleet known_hosts' -i ~/.ssh/fleet"
    app, jump_ip, _ = wired(tmp_path, "custom", bastion_user="admin", bastion_ssh_args=custom)
    assert app["ansible_ssh_common_args"] == f'-o ProxyCommand="ssh -W %h:%p {custom} admin@{jump_ip}"'
    option, proxy = shlex.split(app["ansible_ssh_common_args"])
    assert (option, proxy) == ("-o", f"ProxyCommand=ssh -W %h:%p {custom} admin@{jump_ip}")
    # What ssh's shell then runs: the operator's quoting holds.
    assert shlex.split(proxy.split("=", 1)[1])[6:] == ["UserKnownHostsFile=/etc/fleet known_hosts", "-i", "~/.ssh/fleet", f"admin@{jump_ip}"]


def test_bastion_ssh_args_from_the_environment_unless_the_file_sets_them(behind_bastion, tmp_path, monkeypatch):
    # A key or known_hosts path that differs per controller (the local fleet's, a CI runner's).
    from_env = "-o StrictHostKeyChecking=yes -o UserKnownHostsFile=/run/ci/known_hosts -i /run/ci/fleet"
    monkeypatch.setenv("EC2FLEET_BASTION_SSH_ARGS", from_env)
    app, jump_ip, _ = wired(tmp_path, "env", bastion_user="admin")
    assert app["ansible_ssh_common_args"] == f'-o ProxyCommand="ssh -W %h:%p {from_env} admin@{jump_ip}"'
    app, jump_ip, _ = wired(tmp_path, "file", bastion_user="admin", bastion_ssh_args="-o StrictHostKeyChecking=yes -i k")
    assert app["ansible_ssh_common_args"] == f'-o ProxyCommand="ssh -W %h:%p -o StrictHostKeyChecking=yes -i k admin@{jump_ip}"'


def test_empty_bastion_ssh_args_keep_proxyjump(behind_bastion, tmp_path):
    # The operator's choice, documented: the hop then follows ~/.ssh/config.
    app, jump_ip, _ = wired(tmp_path, "jump", bastion_ssh_args="", bastion_user="jump", bastion_port=2222)
    assert app["ansible_ssh_common_args"] == f"-o ProxyJump=jump@{jump_ip}:2222"
    app, jump_ip, _ = wired(tmp_path, "jump22", bastion_ssh_args="")
    assert app["ansible_ssh_common_args"] == f"-o ProxyJump={jump_ip}"
    # A bare key (null) is not empty: Ansible gives it the default, the strict hop.
    app, jump_ip, _ = wired(tmp_path, "null", bastion_ssh_args=None)
    assert app["ansible_ssh_common_args"] == f'-o ProxyCommand="ssh -W %h:%p {STRICT} {jump_ip}"'


@pytest.mark.parametrize(("option", "value"), [("bastion_ssh_args", '-o "StrictHostKeyChecking=yes"'),
                                               ("bastion_ssh_args", "-i C:\\keys\\fleet"),
                                               ("bastion_user", 'ad"min')])
def test_what_would_break_the_proxycommand_is_refused(aws, tmp_path, option, value):
    config = {"plugin": "ec2fleet.fleet.ec2_fleet", "regions": [REGION], option: value}
    with pytest.raises(AnsibleError) as err:
        parse_inventory(write_config(tmp_path, config))
    what = "ssh options" if option == "bastion_ssh_args" else "a user name"
    assert str(err.value).splitlines()[0] == (
        f"ec2_fleet: option {option} must be {what} without double quotes, backslashes or newlines, got {value!r}")


def test_a_real_ssh_runs_the_hop_with_bastion_ssh_args(behind_bastion, tmp_path):
    """OpenSSH itself splits and runs the ProxyCommand: a stand-in named ssh, first on PATH,
    records the hop's arguments (the outer ssh is the real one, by its path)."""
    real_ssh = shutil.which("ssh")
    assert real_ssh, "OpenSSH client needed"
    bin_dir, record = tmp_path / "bin", tmp_path / "hop.json"
    bin_dir.mkdir()
    recording_program(bin_dir / "ssh")
    custom = "-o StrictHostKeyChecking=yes -o UserKnownHostsFile='/etc/fleet known_hosts'"
    app, jump_ip, _ = wired(tmp_path, "real", bastion_user="jump", bastion_port=2222, bastion_ssh_args=custom)
    seen = ssh_through(app, record, env={"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "SHELL": "/bin/sh"},
                       ssh=real_ssh)
    assert seen["argv"] == [
        "-W", f"{app['ansible_host']}:22", "-o", "StrictHostKeyChecking=yes", "-o", "UserKnownHostsFile=/etc/fleet known_hosts",
        "-p", "2222", f"jump@{jump_ip}"]


# -- hostnames and duplicates ----------------------------------------------------------------

def test_hostname_preferences(aws, tmp_path):
    net = fleet.make_network(REGION)
    named = fleet.run_instances(REGION, net.private_subnets[0], tags={"Name": "named", "Role": "db"})[0]
    unnamed = fleet.run_instances(REGION, net.private_subnets[0], tags={"Role": "cache"})[0]
    ips = {i["InstanceId"]: i["PrivateIpAddress"] for r in ec2().describe_instances()["Reservations"]
           for i in r["Instances"]}

    config = {"plugin": "ec2fleet.fleet.ec2_fleet", "regions": [REGION], "hostnames": ["tag:Name", "private-ip-address"]}
    inventory, _ = parse_inventory(write_config(tmp_path, config))
    assert set(inventory.hosts) == {"named", ips[unnamed]}

    config["hostnames"] = [{"name": "instance-id", "prefix": "tag:Role", "separator": "-"}]
    inventory, _ = parse_inventory(write_config(tmp_path, config, name="prefixed"))
    assert set(inventory.hosts) == {f"db-{named}", f"cache-{unnamed}"}

    config["hostnames"] = ["tag:Role=db", "tag:Missing,Role"]
    inventory, _ = parse_inventory(write_config(tmp_path, config, name="tagvalue"))
    assert set(inventory.hosts) == {"Role_db", "cache"}

    # Nothing matches: the instance id names it; it is never dropped.
    config["hostnames"] = ["tag:Missing"]
    inventory, _ = parse_inventory(write_config(tmp_path, config, name="fallback"))
    assert set(inventory.hosts) == {named, unnamed}


def test_duplicate_hostnames_never_collapse(aws, tmp_path):
    net = fleet.make_network(REGION)
    first = fleet.run_instances(REGION, net.private_subnets[0], tags={"Name": "twin"})[0]
    second = fleet.run_instances(REGION, net.private_subnets[0], tags={"Name": "twin"})[0]
    earlier, later = sorted([first, second])
    inventory, plugin = parse_inventory(write_config(tmp_path, {"plugin": "ec2fleet.fleet.ec2_fleet", "regions": [REGION]}))
    assert set(inventory.hosts) == {"twin", f"twin-{later}"}
    assert hostvars(inventory, "twin")["ec2_instance_id"] == earlier
    assert any("twin" in w and later in w for w in plugin._warnings)

    config = {"plugin": "ec2fleet.fleet.ec2_fleet", "regions": [REGION], "strict_hostnames": True}
    with pytest.raises(AnsibleError, match=f"hostname 'twin' of {later} is already used by {earlier}"):
        parse_inventory(write_config(tmp_path, config, name="strict"))

    proc = run_cli("ansible-inventory", "-i", str(write_config(tmp_path, config, name="strictcli")), "--list")
    assert proc.returncode != 0
    assert "strict_hostnames=true" in proc.stderr


# -- filters and states ----------------------------------------------------------------------

def test_filters_include_exclude_and_states(aws, tmp_path):
    net = fleet.make_network(REGION)
    subnet = net.private_subnets[0]
    fleet.run_instances(REGION, subnet, tags={"Name": "web-prod", "Env": "prod", "Role": "web"})
    fleet.run_instances(REGION, subnet, tags={"Name": "web-dev", "Env": "dev", "Role": "web"})
    fleet.run_instances(REGION, subnet, tags={"Name": "db-prod", "Env": "prod", "Role": "db"})
    fleet.run_instances(REGION, subnet, tags={"Name": "big", "Env": "prod", "Role": "web"}, instance_type="m5.large")
    stopped = fleet.run_instances(REGION, subnet, tags={"Name": "stopped", "Env": "prod", "Role": "web"})[0]
    ec2().stop_instances(InstanceIds=[stopped])

    def hosts(name, **options):
        config = {"plugin": "ec2fleet.fleet.ec2_fleet", "regions": [REGION], **options}
        return set(parse_inventory(write_config(tmp_path, config, name=name))[0].hosts)

    assert hosts("all") == {"web-prod", "web-dev", "db-prod", "big"}  # running only by default
    assert hosts("states", states=["running", "stopped"]) == {"web-prod", "web-dev", "db-prod", "big", "stopped"}
    assert hosts("filters", filters={"tag:Env": "prod", "tag:Role": ["web"]}) == {"web-prod", "big"}
    assert hosts("include", include_filters=[{"tag:Env": "dev"}, {"tag:Role": "db"}]) == {"web-dev", "db-prod"}
    assert hosts("exclude", exclude_filters=[{"instance-type": "m5.large"}, {"tag:Env": "dev"}]) == {"web-prod", "db-prod"}
    assert hosts("mixed", filters={"tag:Env": "prod"}, include_filters=[{"tag:Name": "web-dev"}],
                 exclude_filters=[{"tag:Role": "db"}]) == {"web-prod", "big", "web-dev"}
    # A filter naming instance-state-name wins over states.
    assert hosts("statefilter", filters={"instance-state-name": "stopped"}) == {"stopped"}


# -- constructed: keyed_groups, groups, compose, strict ----------------------------------------

def test_keyed_groups_groups_compose(small_fleet, tmp_path):
    config = {
        "plugin": "ec2fleet.fleet.ec2_fleet", "regions": [REGION],
        "keyed_groups": [
            {"key": "ec2_tags.Role", "prefix": "tag"},
            {"key": "ec2_tags['Env']", "prefix": "environment", "parent_group": "envs"},
            {"key": "ec2_instance_type | replace('.', '_')", "prefix": "type"},
            {"key": "ec2_tags.Missing", "prefix": "missing"},
        ],
        "groups": {"scaled": "asg_name is not none", "first_web": "ec2_tags.Name == 'web-0001'"},
        "compose": {"deploy_batch": "asg_name ~ '-' ~ ec2_availability_zone", "name_tag": "ec2_tags.Name"},
    }
    inventory, _ = parse_inventory(write_config(tmp_path, config))
    assert group_hosts(inventory, "tag_web") == ["web-0001", "web-0002", "web-0003"]
    assert group_hosts(inventory, "tag_Worker") == ["worker-0001", "worker-0002"]
    assert len(group_hosts(inventory, "environment_prod")) == 6
    assert [g.name for g in inventory.groups["environment_prod"].parent_groups] == ["envs"]
    assert len(group_hosts(inventory, "type_t3_micro")) == 6
    assert not any(g.startswith("missing") for g in inventory.groups)
    assert len(group_hosts(inventory, "scaled")) == 5
    assert group_hosts(inventory, "first_web") == ["web-0001"]
    web = hostvars(inventory, "web-0001")
    assert web["deploy_batch"] == f"web-prod-{web['ec2_availability_zone']}"
    assert web["name_tag"] == "web-0001"
    assert "bastion-1" not in group_hosts(inventory, "scaled")


def test_strict_makes_bad_expressions_fatal(small_fleet, tmp_path):
    lenient = {"plugin": "ec2fleet.fleet.ec2_fleet", "regions": [REGION], "compose": {"x": "ec2_tags.Nope.deeper"},
               "keyed_groups": [{"key": "no_such_var", "prefix": "k"}]}
    inventory, _ = parse_inventory(write_config(tmp_path, lenient))
    assert "x" not in hostvars(inventory, "web-0001")
    with pytest.raises(AnsibleError, match="Could not set x"):
        parse_inventory(write_config(tmp_path, {**lenient, "strict": True}, name="strict"))


# -- regions ---------------------------------------------------------------------------------

def test_regions_concurrent_and_disabled_region_skipped(aws, tmp_path):
    for r, region in enumerate(["us-east-1", "eu-west-1"]):
        net = fleet.make_network(region, cidr=f"10.{r}.0.0/16")
        fleet.run_instances(region, net.private_subnets[0], tags={"Name": f"app-{region}"})
    # ap-east-1 is an opt-in region the (emulated) account has not enabled.
    config = {"plugin": "ec2fleet.fleet.ec2_fleet", "regions": ["us-east-1", "eu-west-1", "ap-east-1"]}
    inventory, plugin = parse_inventory(write_config(tmp_path, config))
    assert set(inventory.hosts) == {"app-us-east-1", "app-eu-west-1"}
    assert hostvars(inventory, "app-eu-west-1")["ec2_region"] == "eu-west-1"
    assert "region_eu_west_1" in inventory.groups
    assert any("ap-east-1" in w and "not enabled" in w for w in plugin._warnings)

    proc = run_cli("ansible-inventory", "-i", str(write_config(tmp_path, config, name="cli")), "--list")
    assert proc.returncode == 0, proc.stderr
    assert "skipping region ap-east-1" in proc.stderr


def test_empty_regions_means_every_enabled_region(aws, tmp_path):
    net = fleet.make_network("sa-east-1")
    fleet.run_instances("sa-east-1", net.private_subnets[0], tags={"Name": "far-away"})
    inventory, _ = parse_inventory(write_config(tmp_path, {"plugin": "ec2fleet.fleet.ec2_fleet", "regions": []}))
    assert set(inventory.hosts) == {"far-away"}
    assert hostvars(inventory, "far-away")["ec2_region"] == "sa-east-1"


def test_region_pool_is_bounded(aws, tmp_path, monkeypatch):
    regions = ["us-east-1", "us-east-2", "us-west-1", "us-west-2", "eu-west-1", "eu-central-1"]
    pool = PoolTracker(monkeypatch)
    parse_inventory(write_config(tmp_path, {"plugin": "ec2fleet.fleet.ec2_fleet", "regions": regions, "max_concurrency": 2}))
    assert pool.peak == 2
    pool.reset()
    parse_inventory(write_config(tmp_path, {"plugin": "ec2fleet.fleet.ec2_fleet", "regions": regions}, name="default"))
    assert pool.peak == 4  # the default bound


# -- cache -----------------------------------------------------------------------------------

def cached_config(tmp_path, **extra):
    return {"plugin": "ec2fleet.fleet.ec2_fleet", "regions": [REGION], "cache": True,
            "cache_plugin": "jsonfile", "cache_connection": str(tmp_path / "cache"), **extra}


def test_cache_hit_makes_no_aws_call_and_config_change_invalidates(small_fleet, tmp_path, monkeypatch):
    counter = CallCounter(monkeypatch)
    path = write_config(tmp_path, cached_config(tmp_path))
    cold, _ = parse_inventory(path)
    assert counter.calls, "the cold run must call AWS"
    assert "DescribeInstances" in counter.calls and "DescribeAutoScalingGroups" in counter.calls

    fleet.run_instances(REGION, small_fleet.private_subnets[0], tags={"Name": "newcomer"})
    counter.calls.clear()
    factories = counter.factories
    warm, _ = parse_inventory(path)
    assert counter.calls == [] and counter.factories == factories  # not even a client built
    assert set(warm.hosts) == set(cold.hosts) and "newcomer" not in warm.hosts
    assert {g: group_hosts(warm, g) for g in warm.groups} == {g: group_hosts(cold, g) for g in cold.groups}
    assert hostvars(warm, "web-0001") == hostvars(cold, "web-0001")
    assert [p.name for p in warm.groups["asg_web_prod"].parent_groups] == ["all"]

    # cache=False from the caller (meta: refresh_inventory, --flush-cache) refreshes.
    refreshed, _ = parse_inventory(path, cache=False)
    assert "newcomer" in refreshed.hosts and counter.calls

    # Any change to the file's content is a different cache entry, even a comment.
    path.write_text(path.read_text() + "# touched\n")
    counter.calls.clear()
    changed, _ = parse_inventory(path)
    assert counter.calls and "newcomer" in changed.hosts


def test_cache_key_follows_profile_and_content(aws, tmp_path, monkeypatch):
    path = write_config(tmp_path, cached_config(tmp_path))
    _, plugin = parse_inventory(path)
    key = plugin._fleet_cache_key(str(path))
    monkeypatch.setitem(plugin._options, "profile", "other")
    assert plugin._fleet_cache_key(str(path)) != key
    monkeypatch.setitem(plugin._options, "profile", None)
    assert plugin._fleet_cache_key(str(path)) == key


def test_cli_warm_cache_answers_without_aws(small_fleet, aws, tmp_path):
    config = {**cached_config(tmp_path), "cache_plugin": "ansible.builtin.jsonfile"}
    path = write_config(tmp_path, config)
    first = inventory_list(path)
    assert "web-0001" in all_hosts(first)
    # The emulator forgets everything: only the cache can still answer, and it does.
    aws.reset()
    assert inventory_list(path) == first
    proc = run_cli("ansible", "all", "-i", str(path), "--list-hosts")
    assert proc.returncode == 0 and "hosts (6)" in proc.stdout
    # --flush-cache asks AWS again, which now has nothing.
    assert all_hosts(inventory_list(path, args=("--flush-cache",))) == set()


# -- credentials, roles, endpoints -----------------------------------------------------------

def test_assume_role_uses_the_role_account(small_fleet, tmp_path):
    same = {"plugin": "ec2fleet.fleet.ec2_fleet", "regions": [REGION], "assume_role_arn": "arn:aws:iam::123456789012:role/fleet-read"}
    inventory, _ = parse_inventory(write_config(tmp_path, same))
    assert len(inventory.hosts) == 6
    # Another account (moto keeps one backend per account): the role sees none of these.
    other = {**same, "assume_role_arn": "arn:aws:iam::111122223333:role/fleet-read"}
    inventory, _ = parse_inventory(write_config(tmp_path, other, name="other"))
    assert len(inventory.hosts) == 0


def test_profile_from_shared_files(small_fleet, tmp_path, monkeypatch):
    credentials = tmp_path / "credentials"
    credentials.write_text("[fleet]\naws_access_key_id = testing\naws_secret_access_key = testing\n")
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(credentials))
    inventory, _ = parse_inventory(write_config(tmp_path, {"plugin": "ec2fleet.fleet.ec2_fleet", "regions": [REGION], "profile": "fleet"}))
    assert len(inventory.hosts) == 6
    with pytest.raises(AnsibleError, match="AWS profile 'nope' not found"):
        parse_inventory(write_config(tmp_path, {"plugin": "ec2fleet.fleet.ec2_fleet", "regions": [REGION], "profile": "nope"}, name="n"))


def test_endpoint_url_option_overrides_environment(small_fleet, tmp_path, monkeypatch):
    endpoint = os.environ["AWS_ENDPOINT_URL"]
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")
    config = {"plugin": "ec2fleet.fleet.ec2_fleet", "regions": [REGION], "endpoint_url": endpoint}
    inventory, _ = parse_inventory(write_config(tmp_path, config))
    assert len(inventory.hosts) == 6


# -- errors ----------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({"bogus_option": 1}, "unknown option(s) bogus_option"),
        ({"states": ["running", "sleeping"]}, "option states has invalid value(s) sleeping; allowed values are: pending, running"),
        ({"default_groups": ["role", "team"]}, "option default_groups has invalid value(s) team; allowed values are: bastion, asg"),
        ({"retry_mode": "eager"}, "retry_mode"),
        ({"ssh_via_bastion": "sometimes"}, "ssh_via_bastion"),
        ({"max_concurrency": 0}, "option max_concurrency must be an integer >= 1"),
        ({"max_concurrency": "many"}, "max_concurrency"),
        ({"regions": ["moon-1"]}, "option regions has invalid region name(s) moon-1"),
        ({"hostnames": ["shoe-size"]}, "unknown source 'shoe-size'; allowed: tag:<Key>"),
        ({"hostnames": [{"prefix": "tag:Role"}]}, "a dict entry needs 'name'"),
        ({"filters": ["tag:Env=prod"]}, "filters"),
        ({"exclude_filters": ["x"]}, "option exclude_filters must be a list of dicts"),
    ],
)
def test_bad_options_name_the_option_and_allowed_values(aws, tmp_path, options, expected):
    config = {"plugin": "ec2fleet.fleet.ec2_fleet", "regions": [REGION], **options}
    with pytest.raises(AnsibleError) as err:
        parse_inventory(write_config(tmp_path, config))
    assert expected in str(err.value)


def test_inventory_file_is_read_once(small_fleet, tmp_path, monkeypatch):
    from ansible.parsing.dataloader import DataLoader

    path = write_config(tmp_path, {"plugin": "ec2fleet.fleet.ec2_fleet", "regions": [REGION], "cache": False})
    reads = []
    real = DataLoader.load_from_file

    def counting(self, file_name, *args, **kwargs):
        reads.append(file_name)
        return real(self, file_name, *args, **kwargs)

    monkeypatch.setattr(DataLoader, "load_from_file", counting)
    inventory, _ = parse_inventory(path)
    assert reads == [str(path)]
    assert "web-0001" in inventory.hosts


def test_bad_option_through_cli_exits_non_zero(aws, tmp_path):
    path = write_config(tmp_path, {"plugin": "ec2fleet.fleet.ec2_fleet", "regions": [REGION], "states": ["sleeping"]})
    proc = run_cli("ansible-inventory", "-i", str(path), "--list")
    assert proc.returncode != 0
    assert "option states has invalid value(s) sleeping; allowed values are:" in proc.stderr
    proc = run_cli("ansible", "all", "-i", str(path), "--list-hosts")
    assert proc.returncode != 0
    playbook = tmp_path / "play.yml"
    playbook.write_text("- hosts: all\n  gather_facts: false\n  tasks: []\n")
    proc = run_cli("ansible-playbook", "-i", str(path), str(playbook))
    assert proc.returncode != 0 and "option states has invalid value(s) sleeping" in proc.stderr


def _one_line_error(err):
    message = str(err.value).splitlines()[0]
    assert message.startswith("ec2_fleet: cannot ")
    return message


def test_no_credentials(aws, tmp_path, monkeypatch):
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(key, raising=False)
    # No instance role either: the metadata service lookup must not leave the machine.
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    path = write_config(tmp_path, {"plugin": "ec2fleet.fleet.ec2_fleet", "regions": [REGION]})
    with pytest.raises(AnsibleError) as err:
        parse_inventory(path)
    assert "no AWS credentials found" in _one_line_error(err)
    proc = run_cli("ansible-inventory", "-i", str(path), "--list")
    assert proc.returncode != 0 and "no AWS credentials found" in proc.stderr


def test_unreachable_endpoint(aws, tmp_path):
    url = f"http://127.0.0.1:{free_port()}"
    config = {"plugin": "ec2fleet.fleet.ec2_fleet", "regions": [REGION], "endpoint_url": url, "max_attempts": 1}
    with pytest.raises(AnsibleError) as err:
        parse_inventory(write_config(tmp_path, config))
    message = _one_line_error(err)
    assert "unreachable" in message and url in message and "region us-east-1" in message
    proc = run_cli("ansible-inventory", "-i", str(write_config(tmp_path, config, name="cli")), "--list")
    assert proc.returncode != 0 and f"AWS endpoint {url}" in proc.stderr


def test_access_denied(small_fleet, tmp_path):
    with DenyingEndpoint(os.environ["AWS_ENDPOINT_URL"], ["ec2"]) as deny:
        config = {"plugin": "ec2fleet.fleet.ec2_fleet", "regions": [REGION], "endpoint_url": deny.url}
        with pytest.raises(AnsibleError) as err:
            parse_inventory(write_config(tmp_path, config))
        message = _one_line_error(err)
        assert "access denied (UnauthorizedOperation" in message and deny.url in message
        proc = run_cli("ansible-inventory", "-i", str(write_config(tmp_path, config, name="cli")), "--list")
        assert proc.returncode != 0 and "access denied" in proc.stderr


def test_strict_permissions_off_drops_only_denied_extras(small_fleet, tmp_path):
    with DenyingEndpoint(os.environ["AWS_ENDPOINT_URL"], ["autoscaling"]) as deny:
        config = {"plugin": "ec2fleet.fleet.ec2_fleet", "regions": [REGION], "endpoint_url": deny.url}
        with pytest.raises(AnsibleError, match=r"cannot query EC2 inventory .*access denied"):
            parse_inventory(write_config(tmp_path, config))
        inventory, plugin = parse_inventory(write_config(tmp_path, {**config, "strict_permissions": False}, name="lax"))
    assert len(inventory.hosts) == 6 and "asg_web_prod" not in inventory.groups
    assert any("describe Auto Scaling groups" in w for w in plugin._warnings)


def test_fleet_aws_is_one_module_for_plugin_and_tools(aws, tmp_path):
    from ansible_collections.ec2fleet.fleet.plugins.module_utils import aws

    from ec2fleet.aws import client_layer

    _, plugin = parse_inventory(write_config(tmp_path, {"plugin": "ec2fleet.fleet.ec2_fleet", "regions": [REGION]}))
    assert plugin._fleet_aws is aws is client_layer
    assert client_layer.__name__ == "ansible_collections.ec2fleet.fleet.plugins.module_utils.aws"


def test_production_example_is_valid_and_works(small_fleet, tmp_path):
    """inventory/production.ec2_fleet.yml as shipped, pointed at the emulator (cache kept in tmp)."""
    config = yaml.safe_load((REPO / "inventory" / "production.ec2_fleet.yml").read_text())
    config["cache_connection"] = str(tmp_path / "cache")
    inventory, _ = parse_inventory(write_config(tmp_path, config, name="production"))
    assert len(group_hosts(inventory, "role_web")) == 3
    assert group_hosts(inventory, "bastion") == ["bastion-1"]
    assert "type_t3_micro" in inventory.groups
    web = hostvars(inventory, "web-0001")
    assert web["ansible_user"] == "admin" and web["target_group_arns"] == []
    assert web["ansible_ssh_common_args"].startswith(f'-o ProxyCommand="ssh -W %h:%p {STRICT} admin@')

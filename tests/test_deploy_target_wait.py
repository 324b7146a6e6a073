"""fleet_target_wait against the emulator: register/deregister a host outside any ASG, wait for
health and for deregistration, target group discovery, check mode, clear failures; plus the pure
state summary. (moto has no draining and no health checks: waits are exercised by really
stopping/starting instances and deregistering them a little later.)"""

from __future__ import annotations

import sys

import pytest
from ansible_collections.ec2fleet.fleet.plugins.module_utils import deploy as deploy_utils
from deploy_support import client, registered, run_module, run_tasks, web_fleet

pytestmark = pytest.mark.emulator

FAST = {"poll_interval": 0.2}


def plain_instance(fleet):
    return client("ec2").run_instances(ImageId="ami-12c6146b", MinCount=1, MaxCount=1,
                                       SubnetId=fleet.private_subnets[0])["Instances"][0]["InstanceId"]


def later(python_code, delay=8):
    """A play task that runs boto3 code in the background ``delay`` seconds later, so the next
    task (the module) starts while the emulator still shows the old state (8 s: on a loaded
    2-core machine starting the module took over 3 s, and the module then waited 0 s)."""
    code = f"import time, boto3; time.sleep({delay}); {python_code}"
    return {"name": "something happens a little later",
            "ansible.builtin.shell": f"nohup {sys.executable} -c \"{code}\" >/dev/null 2>&1 &",
            "changed_when": False}


def test_register_wait_and_deregister_a_host_outside_any_asg(aws):
    _ids, arns, fleet = web_fleet(size=1, tg_names=("web", "api"), deregistration_delays={"web": 10})
    host = plain_instance(fleet)
    elbv2 = client("elbv2")
    api = elbv2.create_target_group(Name="api8080", Protocol="HTTP", Port=8080, VpcId=fleet.vpc_id)["TargetGroups"][0]["TargetGroupArn"]
    reg, again, dereg = run_tasks([
        {"name": "register", "ec2fleet.fleet.target_wait": {"instance_id": host, "state": "registered",
                                                   "target_groups": ["web", api], **FAST}},
        {"name": "register again", "ec2fleet.fleet.target_wait": {"instance_id": host, "state": "registered",
                                                         "target_groups": ["web", api], **FAST}},
        # No target_groups: every target group it is registered in now.
        {"name": "deregister", "ec2fleet.fleet.target_wait": {"instance_id": host, "state": "deregistered", **FAST}},
    ])
    assert reg["changed"] is True and reg["registered_now"] == [arns[0], api]
    assert reg["target_states"][arns[0]] == [{"port": 80, "state": "healthy", "reason": "", "description": ""}]
    assert [e["port"] for e in reg["target_states"][api]] == [8080]
    assert again["changed"] is False and again["registered_now"] == []
    assert dereg["changed"] is True
    assert dereg["target_groups"] == sorted([arns[0], api]) and sorted(dereg["deregistered_now"]) == sorted([arns[0], api])
    assert dereg["deregistration_delays"][arns[0]] == 10
    assert dereg["target_states"] == {arns[0]: [], api: []}
    assert not registered(arns[0], host) and not registered(api, host)
    assert registered(arns[0], _ids[0])  # the ASG member was not touched


def test_health_wait_lasts_until_the_host_is_healthy(aws):
    ids, arns, _ = web_fleet(size=2)
    client("ec2").stop_instances(InstanceIds=[ids[0]])
    _bg, result = run_tasks([
        later(f"boto3.client('ec2').start_instances(InstanceIds=['{ids[0]}'])"),
        # No target groups given: those of the instance's ASG.
        {"name": "wait healthy", "ec2fleet.fleet.target_wait": {"instance_id": ids[0], "timeout": 60, **FAST}},
    ])
    assert result["changed"] is False and result["target_groups"] == arns
    assert result["waited_seconds"] > 0
    assert result["target_states"][arns[0]][0]["state"] == "healthy"


def test_absent_wait_lasts_until_deregistered(aws):
    ids, arns, _ = web_fleet(size=2)
    _bg, result = run_tasks([
        later(f"boto3.client('elbv2').deregister_targets(TargetGroupArn='{arns[0]}', Targets=[{{'Id': '{ids[0]}'}}])"),
        {"name": "wait gone", "ec2fleet.fleet.target_wait": {"instance_id": ids[0], "state": "absent", "asg_name": "web",
                                                    "timeout": 60, **FAST}},
    ])
    assert result["waited_seconds"] > 0 and result["target_states"] == {arns[0]: []}
    assert not registered(arns[0], ids[0])


def test_timeouts_name_each_target_group_state(aws):
    ids, arns, _fleet = web_fleet(size=2, tg_names=("web", "api"))
    client("ec2").stop_instances(InstanceIds=[ids[0]])
    healthy, absent = run_tasks([
        {"name": "never healthy", "ec2fleet.fleet.target_wait": {"instance_id": ids[0], "timeout": 1, **FAST},
         "ignore_errors": True},
        {"name": "never gone", "ec2fleet.fleet.target_wait": {"instance_id": ids[1], "state": "absent",
                                                     "target_groups": ["web"], "timeout": 1, **FAST},
         "ignore_errors": True},
    ])
    stopped = "port 80 unused (Target.InvalidState: Target is in the stopped state)"
    assert healthy["failed"] is True
    assert healthy["msg"].startswith(f"{ids[0]} not healthy in every target group after ")
    names = sorted(["web", "api"], key=lambda n: arns[["web", "api"].index(n)])
    assert healthy["msg"].endswith(f"{names[0]}: {stopped}; {names[1]}: {stopped}")
    assert absent["failed"] is True and absent["msg"].endswith("web: port 80 healthy")


def test_check_mode_changes_nothing(aws):
    _ids, arns, fleet = web_fleet(size=1)
    host = plain_instance(fleet)
    result = run_module("ec2fleet.fleet.target_wait", {"instance_id": host, "state": "registered", "target_group_arns": arns},
                        check=True)
    assert result["changed"] is True and result["registered_now"] == arns and "would change" in result["msg"]
    assert not registered(arns[0], host)


def test_failures_are_one_clear_line(aws):
    ids, _arns, fleet = web_fleet(size=1)
    host = plain_instance(fleet)
    cases = [
        ({"instance_id": ids[0], "target_groups": ["nope"]}, "target group(s) nope: not found (region us-east-1"),
        ({"instance_id": "i-0123456789abcdef0"}, "EC2 instance i-0123456789abcdef0 not found (region us-east-1"),
        ({"instance_id": host, "state": "registered"}, "state=registered needs target_groups"),
        ({"instance_id": host}, f"no target group to wait on for {host}"),
        ({"instance_id": ids[0], "asg_name": "ghost"}, "Auto Scaling group 'ghost' not found"),
    ]
    results = run_tasks([{"name": f"case {n}", "ec2fleet.fleet.target_wait": args, "ignore_errors": True}
                         for n, (args, _) in enumerate(cases)])
    for result, (_args, expected) in zip(results, cases, strict=True):
        assert result["failed"] is True
        assert result["msg"].startswith(expected), result["msg"]
        assert "\n" not in result["msg"]


# --- pure logic ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def utils():
    return deploy_utils


def entry(state, port=80, reason="", description=""):
    return {"port": port, "state": state, "reason": reason, "description": description}


@pytest.mark.parametrize("entries, summary", [
    ([], "absent"),
    ([entry("healthy")], "healthy"),
    ([entry("healthy"), entry("healthy", 8080)], "healthy"),
    ([entry("healthy"), entry("initial", 8080)], "initial"),  # every port must be healthy
    ([entry("draining")], "draining"),  # draining is still "there" for an absent wait
    ([entry("unhealthy.draining")], "unhealthy.draining"),
    ([entry("healthy"), entry("unhealthy", 8080)], "unhealthy"),
    ([entry("unused", reason="Target.NotInUse")], "unused"),
])
def test_summarize(utils, entries, summary):
    assert utils.summarize(entries) == summary


def test_state_line(utils):
    arn = "arn:aws:elasticloadbalancing:eu-west-1:123456789012:targetgroup/web/0123456789abcdef"
    assert utils.tg_name(arn) == "web"
    assert utils.state_line(arn, []) == "web: not registered"
    assert utils.state_line(arn, [entry("draining", reason="Target.DeregistrationInProgress",
                                        description="Target deregistration is in progress"), entry("healthy", 8080)]) == (
        "web: port 80 draining (Target.DeregistrationInProgress: Target deregistration is in progress), port 8080 healthy")

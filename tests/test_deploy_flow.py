"""The building blocks composed as the deploy playbook uses them, on the emulator: one host's
cycle (lock, suspend, Standby + drain, back InService + healthy, resume, release), and the
recovery of a killed run from the lock's `data` (what it suspended, what it left in Standby).

moto does not deregister Standby instances (AWS does): StandbyStandIn does it, openly."""

from __future__ import annotations

import pytest
from deploy_support import StandbyStandIn, client, lifecycle, registered, run_tasks, web_fleet

pytestmark = pytest.mark.emulator

LOCK = {"app": "sampleapp", "env": "prod"}
FAST = {"poll_interval": 0.2}


def suspended(name="web"):
    group = client("autoscaling").describe_auto_scaling_groups(AutoScalingGroupNames=[name])["AutoScalingGroups"][0]
    return sorted(p["ProcessName"] for p in group["SuspendedProcesses"])


def test_one_host_cycle(aws):
    ids, arns, _ = web_fleet(size=3)
    host = ids[1]
    with StandbyStandIn("web", drain=1.0):
        results = run_tasks([
            {"name": "lock", "ec2fleet.fleet.deploy_lock": {**LOCK, "version": "2.0.0"}, "register": "lock"},
            {"name": "suspend", "ec2fleet.fleet.asg_processes": {"name": "web"}, "register": "procs"},
            {"name": "remember", "ec2fleet.fleet.deploy_lock": {**LOCK, "state": "updated", "run_id": "{{ lock.run_id }}",
                                                       "data": {"suspended": {"web": "{{ procs.suspended_now }}"},
                                                                "standby": [host]}}},
            {"name": "standby", "ec2fleet.fleet.asg_standby": {"instance_id": host, **FAST}},
            # ... the app role deploys here ...
            {"name": "in service", "ec2fleet.fleet.asg_standby": {"instance_id": host, "state": "inservice", **FAST}},
            {"name": "resume", "ec2fleet.fleet.asg_processes": {"name": "web", "state": "resumed",
                                                       "processes": "{{ procs.suspended_now }}"}},
            {"name": "release", "ec2fleet.fleet.deploy_lock": {**LOCK, "state": "released", "run_id": "{{ lock.run_id }}"}},
        ])
    assert [r.get("failed", False) for r in results] == [False] * 7
    assert results[3]["lifecycle_state"] == "Standby" and results[3]["target_wait_seconds"] >= 0.5
    assert results[4]["lifecycle_state"] == "InService"
    assert lifecycle(host) == "InService" and registered(arns[0], host)
    assert suspended() == []
    assert client("ssm").describe_parameters()["Parameters"] == []


def test_killed_run_is_recovered_from_the_lock(aws):
    ids, arns, _ = web_fleet(size=3)
    host = ids[0]
    # The first run: locks, suspends, records, puts the host in Standby -- then is killed (the
    # ad-hoc processes exit; nothing released, resumed or returned to service).
    with StandbyStandIn("web"):
        first = run_tasks([
            {"name": "lock", "ec2fleet.fleet.deploy_lock": {**LOCK, "version": "2.0.0"}, "register": "lock"},
            {"name": "suspend", "ec2fleet.fleet.asg_processes": {"name": "web"}, "register": "procs"},
            {"name": "remember", "ec2fleet.fleet.deploy_lock": {**LOCK, "state": "updated", "run_id": "{{ lock.run_id }}",
                                                       "data": {"suspended": {"web": "{{ procs.suspended_now }}"},
                                                                "standby": [host]}}},
            {"name": "standby", "ec2fleet.fleet.asg_standby": {"instance_id": host, "wait": False}},
        ])
    assert not any(r.get("failed") for r in first)
    assert lifecycle(host) == "Standby" and suspended()

    # The next run takes the stale lock over and finishes the cleanup from `recovered`.
    second = run_tasks([
        {"name": "lock", "ec2fleet.fleet.deploy_lock": {**LOCK, "version": "2.0.0"}, "register": "lock"},
        {"name": "return stale Standby hosts",
         "ec2fleet.fleet.asg_standby": {"instance_id": "{{ item }}", "state": "inservice", **FAST},
         "loop": "{{ lock.recovered.data.standby | default([]) }}"},
        {"name": "resume what the killed run suspended",
         "ec2fleet.fleet.asg_processes": {"name": "{{ item.key }}", "state": "resumed", "processes": "{{ item.value }}"},
         "loop": "{{ lock.recovered.data.suspended | default({}) | dict2items }}"},
        {"name": "release", "ec2fleet.fleet.deploy_lock": {**LOCK, "state": "released", "run_id": "{{ lock.run_id }}"}},
    ])
    lock = second[0]
    assert lock["changed"] is True and "no longer running" in lock["msg"]
    assert lock["recovered"]["data"]["standby"] == [host]
    assert lifecycle(host) == "InService" and registered(arns[0], host)
    assert suspended() == []
    assert second[3]["changed"] is True


"""Helpers for the deploy-module tests (tests/test_deploy_*.py): run our modules for real through
``ansible`` / ``ansible-playbook`` subprocesses against the emulator, and build small emulated
ASG + target group setups.

The subprocesses run in the repository (cwd) so ansible.cfg's library/module_utils/filter paths
apply, with the environment the ``aws`` fixture set (AWS_ENDPOINT_URL, dummy credentials).
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import time
from pathlib import Path

import boto3
import inventory_fleet

REPO = Path(__file__).resolve().parent.parent

# The JSON stdout callback makes every task's result machine-readable; it replaces ansible.cfg's
# profile/timer callbacks, whose text would corrupt the JSON.
JSON_ENV = {
    "ANSIBLE_LOAD_CALLBACK_PLUGINS": "1",
    "ANSIBLE_STDOUT_CALLBACK": "ansible.posix.json",
    "ANSIBLE_CALLBACKS_ENABLED": "ansible.posix.json",
    "ANSIBLE_DEPRECATION_WARNINGS": "0",
    "ANSIBLE_NOCOLOR": "1",
}


def _env(extra=None):
    env = {**os.environ, **JSON_ENV}
    env.update(extra or {})
    return env


def run_module(module, args, check=False, env=None, timeout=180):
    """Run one module on localhost with ``ansible -m``; returns its result dict."""
    cmd = ["ansible", "localhost", "-m", module, "-a", json.dumps(args)]
    if check:
        cmd.append("--check")
    proc = subprocess.run(cmd, cwd=REPO, env=_env(env), capture_output=True, text=True, timeout=timeout)
    try:
        output = json.loads(proc.stdout)
        return output["plays"][0]["tasks"][0]["hosts"]["localhost"]
    except (ValueError, KeyError, IndexError) as exc:
        raise AssertionError(f"ansible produced no result (rc {proc.returncode}):\n{proc.stdout}\n{proc.stderr}") from exc


class BackgroundModule:
    """``ansible localhost -m <module> -a <args>`` running in the background: a module that waits
    (a heartbeat, a checkpoint) while the test acts beside it."""

    def __init__(self, module, args, env=None):
        self.proc = subprocess.Popen(["ansible", "localhost", "-m", module, "-a", json.dumps(args)], cwd=REPO,
                                     env=_env(env), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def result(self, timeout):
        try:
            stdout, stderr = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.stop()
            raise
        try:
            return json.loads(stdout)["plays"][0]["tasks"][0]["hosts"]["localhost"]
        except (ValueError, KeyError, IndexError) as exc:
            raise AssertionError(f"no result (rc {self.proc.returncode}):\n{stdout}\n{stderr}") from exc

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.communicate()


def wait_for(predicate, timeout, step=0.2):
    """Whether ``predicate()`` became true within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return False


def run_tasks(tasks, check=False, env=None, timeout=300, with_pid=False):
    """Run a one-play playbook on localhost; returns the results of its tasks, in order
    (with ``with_pid``: ``(results, pid of the ansible-playbook process)``).

    A failed task ends the play (as in a real run), so the list may be shorter than ``tasks``.
    """
    play = [{"name": "deploy module test", "hosts": "localhost", "gather_facts": False, "tasks": tasks}]
    with tempfile.NamedTemporaryFile("w", suffix=".yml", prefix="deploy-play-", delete=False) as handle:
        json.dump(play, handle)  # JSON is YAML
        path = handle.name
    try:
        cmd = ["ansible-playbook", path]
        if check:
            cmd.append("--check")
        proc = subprocess.Popen(cmd, cwd=REPO, env=_env(env), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)
        try:
            stdout, stderr = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            raise
    finally:
        os.unlink(path)
    try:
        output = json.loads(stdout)
        results = [task["hosts"]["localhost"] for task in output["plays"][0]["tasks"]]
        return (results, proc.pid) if with_pid else results
    except (ValueError, KeyError, IndexError) as exc:
        raise AssertionError(f"ansible-playbook produced no result (rc {proc.returncode}):\n{stdout}\n{stderr}") from exc


def client(service):
    return boto3.client(service)


def web_fleet(size=3, name="web", tg_names=("web",), deregistration_delays=None, min_size=0):
    """A VPC, target groups and one ASG of ``size`` attached to them.

    Returns ``(instance_ids, tg_arns)``. ``deregistration_delays`` maps a target group name to
    its deregistration delay in seconds.
    """
    fleet = inventory_fleet.make_network("us-east-1")
    elbv2 = client("elbv2")
    arns = []
    for tg in tg_names:
        arn = elbv2.create_target_group(Name=tg, Protocol="HTTP", Port=80, VpcId=fleet.vpc_id)["TargetGroups"][0]["TargetGroupArn"]
        delay = (deregistration_delays or {}).get(tg)
        if delay is not None:
            elbv2.modify_target_group_attributes(
                TargetGroupArn=arn,
                Attributes=[{"Key": "deregistration_delay.timeout_seconds", "Value": str(delay)}],
            )
        arns.append(arn)
    ids = inventory_fleet.add_asg(fleet, name, size, target_group_arns=arns)
    if min_size:
        client("autoscaling").update_auto_scaling_group(AutoScalingGroupName=name, MinSize=min_size)
    return ids, arns, fleet


def lifecycle(instance_id):
    found = client("autoscaling").describe_auto_scaling_instances(InstanceIds=[instance_id])["AutoScalingInstances"]
    return found[0]["LifecycleState"] if found else None


def registered(tg_arn, instance_id):
    health = client("elbv2").describe_target_health(TargetGroupArn=tg_arn)["TargetHealthDescriptions"]
    return [h for h in health if h["Target"]["Id"] == instance_id
            and h["TargetHealth"].get("Reason") != "Target.NotRegistered"]


class StandbyStandIn:
    """TEST DOUBLE for one piece of AWS behaviour the emulator lacks (nothing else is faked).

    On AWS, an instance entering Standby is deregistered from its Auto Scaling group's target
    groups (and drains for the target group's deregistration delay before it disappears), and an
    instance returning to InService is registered again (then health-checked). moto does neither
    (its Standby instances stay registered and "healthy"). This thread watches the emulator and
    does it, as AWS would:

    * an instance in Standby still registered -> after ``drain`` seconds, deregistered (and not
      before ``hold``, a threading.Event, is set, when one is given);
    * an InService instance of the group not registered -> after ``register_after`` seconds,
      registered on the target group's port (``reregister=False`` leaves it out, to make a
      health wait time out).

    It never runs inside a module: the modules under test talk to the emulator as they would to AWS.
    """

    def __init__(self, asg_name, drain=0.0, register_after=0.0, reregister=True, interval=0.2, hold=None):
        import threading

        self.asg_name, self.drain, self.register_after, self.hold = asg_name, drain, register_after, hold
        self.reregister, self.interval = reregister, interval
        self.deregistered, self.registered = [], []
        self._stop = threading.Event()
        self._seen = {}
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(10)

    def _loop(self):
        import time

        autoscaling, elbv2 = client("autoscaling"), client("elbv2")
        while not self._stop.wait(self.interval):
            group = autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[self.asg_name])["AutoScalingGroups"][0]
            for arn in group.get("TargetGroupARNs", []):
                port = elbv2.describe_target_groups(TargetGroupArns=[arn])["TargetGroups"][0]["Port"]
                for instance in group["Instances"]:
                    iid, state = instance["InstanceId"], instance["LifecycleState"]
                    is_registered = bool(registered(arn, iid))
                    if state == "Standby" and is_registered and (self.hold is None or self.hold.is_set()):
                        action = ("deregister", arn, iid)
                        first = self._seen.setdefault(action, time.monotonic())
                        if time.monotonic() - first >= self.drain:
                            elbv2.deregister_targets(TargetGroupArn=arn, Targets=[{"Id": iid, "Port": port}])
                            self.deregistered.append((arn, iid))
                            self._seen.pop(action)
                    elif state == "InService" and not is_registered and self.reregister:
                        action = ("register", arn, iid)
                        first = self._seen.setdefault(action, time.monotonic())
                        if time.monotonic() - first >= self.register_after:
                            elbv2.register_targets(TargetGroupArn=arn, Targets=[{"Id": iid, "Port": port}])
                            self.registered.append((arn, iid))
                            self._seen.pop(action)

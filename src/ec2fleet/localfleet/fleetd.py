"""fleetd: the local fleet's controller loop, standing in for what AWS does around instances.

Every `interval` seconds it reads the emulator and, for every Auto Scaling Group of the fleet
(tag ec2fleet:fleet) and every target group the balancer serves (state.json `target_groups`):
1. gives ASG-launched instances their group's tags (standins.AsgTagPropagation);
2. keeps the ASGs' target groups in step with lifecycle states, as AWS does and moto does not,
   draining Standby and ASG-terminated instances for the deregistration delay (standins.py);
3. points the local load balancer at the instances that should get traffic (balancer.py), a
   new instance only once it has passed its health check (standins.InitialHealth) - before
   any container is removed, so a terminated instance gets no new request from then on;
4. starts a container for each running instance of the fleet that has none (and "boots" it:
   key pair user, sudo, user data: the cloud-init stand-in), in the background so the loop
   keeps going; removes containers whose instance is gone, stopped or terminated, except while
   the instance drains (the requests it holds finish first, as on AWS);
5. publishes the balancer's requests, 5xx answers, response times and healthy/unhealthy hosts
   to the emulator's CloudWatch, as an ALB does (lbmetrics.py);
6. every few seconds, evaluates the emulator's CloudWatch alarms and sets their states, as
   CloudWatch does and moto does not (alarms.py).

It runs as a background process started by `fleet up` and stopped by `fleet down` (by PID).
"""

from __future__ import annotations

import argparse
import base64
import logging
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from ec2fleet.aws import REPO
from ec2fleet.localfleet import alarms, containers, lbmetrics, standins
from ec2fleet.localfleet.balancer import Balancer, desired_backends, listener
from ec2fleet.localfleet.state import FleetState
from ec2fleet.localfleet.world import fleet_groups

log = logging.getLogger("fleetd")
METRICS_PERIOD = float(os.environ.get("EC2FLEET_LB_METRICS_PERIOD", "5"))
# Alarms are evaluated this often; a period counts as complete this long after its end (the
# balancer's numbers for it are published at the next tick after the end).
ALARMS_INTERVAL = float(os.environ.get("EC2FLEET_ALARMS_INTERVAL", "5"))
ALARMS_SETTLE = float(os.environ.get("EC2FLEET_ALARMS_SETTLE", "2"))
# The fleet's containers are listed again (docker ps) when the emulator's instances or their
# states change, when a launch ends, and at least this often (something outside fleetd may have
# removed one). Listing at every half-second tick kept dockerd busier than any other process.
CONTAINERS_REFRESH = float(os.environ.get("EC2FLEET_CONTAINERS_REFRESH", "5"))


def target_groups(data: dict) -> dict[str, dict]:
    """Target group short name -> {arn, bind}: what the balancer serves, from state.json (a fleet
    made before several target groups existed has only `target_group_arn` and `lb_port`)."""
    groups = data.get("target_groups") or {"web": {"arn": data["target_group_arn"]}}
    ports = {"web": data["lb_port"], **data.get("lb_ports", {})}
    return {name: {"arn": tg["arn"], "bind": f"127.0.0.1:{ports[name]}"}
            for name, tg in groups.items() if name in ports}


def admitted_before(status: dict) -> set[str]:
    """The instances the balancer sent traffic to when fleetd last wrote its status."""
    found = set(status.get("backends") or {})
    for backends in (status.get("target_groups") or {}).values():
        found |= set(backends)
    return found


class Reconciler:
    def __init__(self, state: FleetState):
        self.state = state
        clients = state.clients
        self.ec2 = clients("ec2")
        self.elbv2 = clients("elbv2")
        self.autoscaling = clients("autoscaling")
        self.cloudwatch = clients("cloudwatch")
        self.balancer = Balancer(state.dir)
        self.failed: dict[str, int] = {}
        self.target_sync = standins.AsgTargetSync(self.autoscaling, self.elbv2)
        self.tag_sync = standins.AsgTagPropagation(self.ec2)
        # Instances that were getting traffic before a restart of fleetd keep getting it.
        self.initial = standins.InitialHealth(self.elbv2, admitted=admitted_before(state.read_status()))
        self.callbacks: dict[str, subprocess.Popen] = {}
        self.launching: dict[str, Future] = {}
        self.will_callback: set[str] = set()
        self.kept: set[str] = set()
        self._containers: dict[str, dict] | None = None  # list_fleet's last answer (containers_now)
        self._containers_for: frozenset = frozenset()
        self._containers_at = 0.0
        # Boot in parallel and in the background: each container spends most of its boot waiting
        # on systemd, and the loop must keep the balancer in step meanwhile.
        self.pool = ThreadPoolExecutor(max_workers=6, thread_name_prefix="launch")
        self.metrics: lbmetrics.Publisher | None = None
        self._metrics_for: dict[str, str] = {}
        # HAProxy logs every request here: the response times (lbmetrics.RequestLog).
        self.request_log = lbmetrics.RequestLog(self.balancer.request_log)
        self.alarms = alarms.Evaluator(self.cloudwatch, settle=ALARMS_SETTLE)
        self.alarms_due = 0.0

    def instances(self) -> dict[str, dict]:
        found = {}
        filters = [{"Name": "tag:ec2fleet:fleet", "Values": [self.state.name]}]
        for page in self.ec2.get_paginator("describe_instances").paginate(Filters=filters):
            for reservation in page["Reservations"]:
                for inst in reservation["Instances"]:
                    found[inst["InstanceId"]] = inst
        return found

    def user_data(self, iid: str) -> str:
        try:
            value = self.ec2.describe_instance_attribute(InstanceId=iid, Attribute="userData")["UserData"]
        except Exception:
            return ""
        raw = value.get("Value") if isinstance(value, dict) else None
        return base64.b64decode(raw).decode() if raw else ""

    def containers_now(self, instances: dict[str, dict]) -> dict[str, dict]:
        """The fleet's containers: the last listing, unless the instances or their states changed,
        a launch ended (it forgets the listing) or CONTAINERS_REFRESH seconds passed."""
        seen = frozenset((iid, inst["State"]["Name"]) for iid, inst in instances.items())
        if (self._containers is None or seen != self._containers_for
                or time.monotonic() - self._containers_at >= CONTAINERS_REFRESH):
            self._containers = containers.list_fleet(self.state.name)
            self._containers_for, self._containers_at = seen, time.monotonic()
        return self._containers

    def reconcile_containers(self, instances: dict[str, dict], keep=frozenset()) -> None:
        """Containers for running instances; none for the others, except those in `keep` (draining)."""
        for iid, future in list(self.launching.items()):
            if future.done():
                del self.launching[iid]
                self.will_callback.discard(iid)
                self._containers = None  # its container is there now, or was removed on failure
        existing = self.containers_now(instances)  # kept in step below as containers go
        running = {iid: i for iid, i in instances.items() if i["State"]["Name"] in ("pending", "running")}
        for iid, row in list(existing.items()):
            if iid in running or iid in self.launching:
                continue
            state = instances.get(iid, {}).get("State", {}).get("Name", "gone")
            if iid in keep:
                if iid not in self.kept:
                    self.kept.add(iid)
                    log.info("instance %s is %s: its container stays up while it drains", iid, state)
                continue
            log.info("instance %s is %s: removing its container", iid, state)
            containers.remove(row["name"])
            self.kept.discard(iid)
            del existing[iid]
        todo = [inst for iid, inst in running.items()
                if iid not in existing and iid not in self.launching and self.failed.get(iid, 0) < 3]
        converged = bool(todo) and self.state.read_flag("converged")
        for inst in todo:
            self.launching[inst["InstanceId"]] = self.pool.submit(self.launch, inst)
            if converged and {t["Key"]: t["Value"] for t in inst.get("Tags", [])}.get("Role") != "bastion":
                self.will_callback.add(inst["InstanceId"])

    def launch(self, inst: dict) -> None:
        data = self.state.data
        iid = inst["InstanceId"]
        tags = {t["Key"]: t["Value"] for t in inst.get("Tags", [])}
        is_bastion = tags.get("Role") == "bastion"
        name = containers.container_name(self.state.name, iid)
        try:
            containers.start(
                self.state.name, data["network"], data["image"], inst,
                public=(data["public_network"], inst["PublicIpAddress"]) if is_bastion and inst.get("PublicIpAddress")
                else None,
                extra_caps=("NET_ADMIN",) if is_bastion else (),
            )
            containers.boot(name, self.state.public_key(), self.user_data(iid), console=self.state.console_path(iid))
            log.info("instance %s (%s, %s) is backed by container %s", iid, tags.get("Role", "?"),
                     inst["PrivateIpAddress"], name)
            if not is_bastion and self.state.read_flag("converged"):
                self.callback(iid)
        except (containers.DockerError, OSError) as exc:
            self.failed[iid] = self.failed.get(iid, 0) + 1
            log.error("could not start a container for %s: %s", iid, exc)
            containers.remove(name)

    def callback(self, iid: str) -> None:
        """The provisioning-callback receiver: converge a newly booted instance with site.yml."""
        logs = self.state.dir / "callbacks"
        logs.mkdir(exist_ok=True)
        env = {**os.environ, **self.state.env(), "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"),
               "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
        with open(logs / f"{iid}.log", "ab") as out:
            proc = subprocess.Popen(
                [str(Path(sys.executable).parent / "ansible-playbook"), "-i", "inventory/local.ec2_fleet.yml",
                 "playbooks/site.yml", "--limit", f"*{iid}"],
                cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            )
        self.callbacks[iid] = proc
        log.info("provisioning callback: converging %s with site.yml (pid %d, log %s)", iid, proc.pid,
                 logs / f"{iid}.log")

    def reap_callbacks(self) -> None:
        for iid, proc in list(self.callbacks.items()):
            if proc.poll() is not None:
                log.info("provisioning callback for %s finished with exit code %d", iid, proc.returncode)
                del self.callbacks[iid]

    def reload_state(self) -> None:
        """`fleet up` may have added target groups (and their ports) since fleetd started."""
        try:
            self.state.data = FleetState.load(self.state.dir).data
        except (OSError, ValueError) as exc:
            log.warning("could not re-read %s: %s", self.state.dir / "state.json", exc)

    def tick(self) -> None:
        self.reload_state()
        self.reap_callbacks()
        instances = self.instances()
        groups = fleet_groups(self.autoscaling, self.state.name)
        # What AWS does and moto does not (standins.py): ASG tags over launch template tags; target
        # groups following Standby and ASG terminations, with the deregistration delay.
        self.tag_sync.sync(instances, groups)
        self.target_sync.sync(instances, groups)
        self.initial.forget(instances)
        served = target_groups(self.state.data)
        listeners = {}
        for name, tg in served.items():
            candidates = desired_backends(self.elbv2, self.autoscaling, instances, tg["arn"])
            listeners[name] = listener(tg["bind"], self.initial.admit(tg["arn"], candidates),
                                       self.target_sync.port(tg["arn"]))
        # The balancer first: an instance the ASG terminated gets no new request from now on,
        # while its container (kept below while it drains) finishes the ones it holds.
        before = self.balancer.current or {}
        if self.balancer.apply(listeners):
            for name, spec in sorted(listeners.items()):
                if before.get(name) == spec:
                    continue
                log.info("load balancer %s (%s) now sends traffic to %d instance(s): %s", name, spec["bind"],
                         len(spec["backends"]), ", ".join(sorted(spec["backends"])) or "none")
        self.reconcile_containers(instances, keep=self.target_sync.draining_instances())
        self.state.write_status({
            "backends": listeners.get("web", {}).get("backends", {}),
            "target_groups": {name: spec["backends"] for name, spec in listeners.items()},
            "draining": sorted(self.target_sync.draining_instances()),
            "launching": sorted(self.launching),
            "time": time.time(),
            # Running provisioning callbacks, and the ones instances still booting will start.
            "callbacks": sorted(set(self.callbacks) | self.will_callback),
        })
        self.publish_metrics({name: tg["arn"] for name, tg in served.items()})
        self.evaluate_alarms()

    def publish_metrics(self, tg_arns: dict[str, str]) -> None:
        if not self.balancer.socket.exists():
            return
        if self.metrics is None or tg_arns != self._metrics_for:
            # What an ALB publishes to CloudWatch and moto does not (lbmetrics.py): every 5 s here.
            self.metrics = lbmetrics.Publisher(self.cloudwatch, self.state.data["load_balancer_arn"], tg_arns,
                                               period=METRICS_PERIOD)
            self._metrics_for = dict(tg_arns)
        try:
            self.metrics.record_times(self.request_log.drain())
            self.metrics.sample(lbmetrics.read_all(self.balancer.socket))
            if self.metrics.due():
                self.metrics.flush()
        except (OSError, ValueError) as exc:
            log.warning("load balancer metrics: %s", exc)


    def evaluate_alarms(self) -> None:
        """What CloudWatch does and moto does not (alarms.py): every ALARMS_INTERVAL seconds."""
        if time.monotonic() < self.alarms_due:
            return
        self.alarms_due = time.monotonic() + ALARMS_INTERVAL
        try:
            self.alarms.evaluate()  # it logs each state it sets
        except Exception as exc:  # the loop goes on; the next pass tries again
            log.warning("alarm evaluation: %s", exc)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="fleetd")
    parser.add_argument("--state-dir", required=True, type=Path)
    parser.add_argument("--interval", type=float, default=0.5)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    state = FleetState.load(args.state_dir)
    reconciler = Reconciler(state)
    stopping = False

    def stop(*_):
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    (args.state_dir / "fleetd.pid").write_text(str(os.getpid()))
    log.info("fleetd started for fleet %s", state.name)
    while not stopping:
        try:
            reconciler.tick()
        except Exception as exc:
            log.error("reconcile failed: %s", exc)
        time.sleep(args.interval)
    reconciler.request_log.close()
    reconciler.balancer.stop()  # last: it removes the short link the sockets may be reached by
    reconciler.pool.shutdown(wait=False, cancel_futures=True)
    log.info("fleetd stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())

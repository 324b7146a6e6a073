"""fleetd: the local fleet's controller loop, standing in for what AWS does around instances.

Every `interval` seconds it reads the emulator and
1. starts a container for each running instance of the fleet that has none (and "boots" it:
   key pair user, sudo, user data: the cloud-init stand-in), removes containers whose instance
   is gone, stopped or terminated;
2. keeps the ASG's target groups in step with lifecycle states, as AWS does and moto does not
   (standins.py);
3. points the local load balancer at the instances that should get traffic (balancer.py);
4. publishes the balancer's request and 5xx counts to the emulator's CloudWatch, as an ALB does
   (lbmetrics.py).

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
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from ec2fleet.aws import REPO
from ec2fleet.localfleet import containers, lbmetrics, standins
from ec2fleet.localfleet.balancer import Balancer, desired_backends
from ec2fleet.localfleet.state import FleetState

log = logging.getLogger("fleetd")
METRICS_PERIOD = float(os.environ.get("EC2FLEET_LB_METRICS_PERIOD", "5"))


class Reconciler:
    def __init__(self, state: FleetState):
        self.state = state
        clients = state.clients
        self.ec2 = clients("ec2")
        self.elbv2 = clients("elbv2")
        self.autoscaling = clients("autoscaling")
        self.balancer = Balancer(state.dir, f"127.0.0.1:{state.data['lb_port']}")
        self.failed: dict[str, int] = {}
        self.target_sync = standins.AsgTargetSync(self.autoscaling, self.elbv2)
        self.callbacks: dict[str, subprocess.Popen] = {}
        # What an ALB publishes to CloudWatch and moto does not (lbmetrics.py): every 5 s here.
        self.metrics = lbmetrics.Publisher(clients("cloudwatch"), state.data["load_balancer_arn"],
                                           state.data["target_group_arn"], period=METRICS_PERIOD)

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

    def reconcile_containers(self, instances: dict[str, dict]) -> None:
        existing = containers.list_fleet(self.state.name)
        running = {iid: i for iid, i in instances.items() if i["State"]["Name"] in ("pending", "running")}
        for iid, row in existing.items():
            if iid not in running:
                log.info("instance %s is %s: removing its container", iid,
                         instances.get(iid, {}).get("State", {}).get("Name", "gone"))
                containers.remove(row["name"])
        todo = [inst for iid, inst in running.items() if iid not in existing and self.failed.get(iid, 0) < 3]
        # Boot in parallel: each container spends most of its boot waiting on systemd.
        with ThreadPoolExecutor(max_workers=6) as pool:
            list(pool.map(self.launch, todo))

    def launch(self, inst: dict) -> None:
        data = self.state.data
        iid = inst["InstanceId"]
        tags = {t["Key"]: t["Value"] for t in inst.get("Tags", [])}
        is_bastion = tags.get("Role") == "bastion"
        name = containers.container_name(self.state.name, iid)
        try:
            containers.start(
                self.state.name, data["network"], data["image"], inst,
                publish_ssh=f"127.0.0.1:{data['bastion_port']}" if is_bastion else None,
                extra_caps=("NET_ADMIN",) if is_bastion else (),
            )
            containers.boot(name, self.state.public_key(), self.user_data(iid))
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

    def tick(self) -> None:
        self.reap_callbacks()
        instances = self.instances()
        self.reconcile_containers(instances)
        # What AWS does with target groups on Standby/termination and moto does not (standins.py).
        self.target_sync.sync(instances, [self.state.data["asg_name"]])
        backends = desired_backends(self.elbv2, self.autoscaling, instances, self.state.data["target_group_arn"])
        if self.balancer.apply(backends):
            log.info("load balancer now sends traffic to %d instance(s): %s", len(backends),
                     ", ".join(sorted(backends)) or "none")
        self.state.write_status({"backends": backends, "time": time.time(), "callbacks": sorted(self.callbacks)})
        self.publish_metrics()

    def publish_metrics(self) -> None:
        if not self.balancer.socket.exists():
            return
        try:
            self.metrics.sample(lbmetrics.read_counters(self.balancer.socket))
            if self.metrics.due():
                self.metrics.flush()
        except (OSError, ValueError) as exc:
            log.warning("load balancer metrics: %s", exc)


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
    reconciler.balancer.stop()
    log.info("fleetd stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""AWS behaviour the emulator (moto) lacks, stood in for by the local fleet, openly.

On AWS, an Auto Scaling Group keeps its target groups in step with its instances' lifecycle:
- an instance entering Standby (or Terminating/Detaching) is deregistered from the ASG's target
  groups, and registered again when it returns to InService;
- a terminated instance is deregistered.
moto does neither: Standby instances and terminated instances stay registered and "healthy".
fleetd calls `AsgTargetSync.sync` every tick so the local fleet behaves like AWS here.
Production code never relies on this module; it runs only inside the local fleet's fleetd.
"""

from __future__ import annotations

import logging
import time

log = logging.getLogger("fleetd.standins")


def _registered(elbv2, tg_arn: str) -> dict[str, dict]:
    descs = elbv2.describe_target_health(TargetGroupArn=tg_arn)["TargetHealthDescriptions"]
    return {d["Target"]["Id"]: d["Target"] for d in descs}


class AsgTargetSync:
    """Deregister/register ASG members as AWS would, draining for the target group's delay.

    While an instance drains it stays registered in the emulator (so a caller waiting for the
    deregistration waits the delay, as on AWS) but gets no new requests: the balancer already
    leaves out every instance that is not InService.
    """

    def __init__(self, autoscaling, elbv2, clock=time.monotonic):
        self.autoscaling = autoscaling
        self.elbv2 = elbv2
        self.clock = clock
        self.draining: dict[tuple[str, str], float] = {}  # (tg, instance) -> deregister at
        self._delays: dict[str, int] = {}
        self._ports: dict[str, int] = {}
        self._announced: set[tuple[str, str]] = set()

    def delay(self, tg_arn: str) -> int:
        if tg_arn not in self._delays:
            attrs = self.elbv2.describe_target_group_attributes(TargetGroupArn=tg_arn)["Attributes"]
            self._delays[tg_arn] = int(next((a["Value"] for a in attrs
                                             if a["Key"] == "deregistration_delay.timeout_seconds"), 300))
        return self._delays[tg_arn]

    def port(self, tg_arn: str) -> int:
        if tg_arn not in self._ports:
            self._ports[tg_arn] = self.elbv2.describe_target_groups(TargetGroupArns=[tg_arn])["TargetGroups"][0]["Port"]
        return self._ports[tg_arn]

    def sync(self, instances: dict[str, dict], asg_names: list[str]) -> list[str]:
        actions = []
        groups = self.autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=asg_names)["AutoScalingGroups"]
        now = self.clock()
        for group in groups:
            members = {i["InstanceId"]: i["LifecycleState"] for i in group["Instances"]}
            for tg_arn in group.get("TargetGroupARNs", []):
                tg_name = tg_arn.rsplit("/", 2)[-2]
                registered = _registered(self.elbv2, tg_arn)
                for iid, state in members.items():
                    ec2_state = instances.get(iid, {}).get("State", {}).get("Name", "terminated")
                    should_be_in = state == "InService" and ec2_state == "running"
                    key = (tg_arn, iid)
                    if iid in registered and not should_be_in:
                        due = self.draining.setdefault(key, now + self.delay(tg_arn))
                        if key not in self._announced:
                            self._announced.add(key)
                            actions.append(f"draining {iid} ({state}) in {tg_name} for {self.delay(tg_arn)}s")
                        if now >= due:
                            self.elbv2.deregister_targets(TargetGroupArn=tg_arn, Targets=[registered[iid]])
                            self.draining.pop(key, None)
                            self._announced.discard(key)
                            actions.append(f"deregistered {iid} ({state}, {ec2_state}) from {tg_name}")
                    elif should_be_in:
                        if self.draining.pop(key, None) is not None:
                            self._announced.discard(key)
                            actions.append(f"{iid} back InService before its drain ended in {tg_name}")
                        if iid not in registered:
                            self.elbv2.register_targets(TargetGroupArn=tg_arn,
                                                        Targets=[{"Id": iid, "Port": self.port(tg_arn)}])
                            actions.append(f"registered {iid} (InService) in {tg_name}")
                # Instances that left the group entirely (terminated) but stay registered in moto.
                for iid, target in registered.items():
                    if iid not in members and instances.get(iid, {}).get("State", {}).get("Name") in (
                            "terminated", "shutting-down", "stopped", None):
                        self.elbv2.deregister_targets(TargetGroupArn=tg_arn, Targets=[target])
                        actions.append(f"deregistered {iid} (no longer running) from {tg_name}")
        for action in actions:
            log.info("AWS stand-in: %s", action)
        return actions

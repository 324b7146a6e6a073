"""AWS behaviour the emulator (moto) lacks, stood in for by the local fleet, openly.

On AWS, an Auto Scaling Group keeps its target groups in step with its instances' lifecycle:
- an instance entering Standby (or Terminating/Detaching) is deregistered from the ASG's target
  groups, and registered again when it returns to InService;
- an instance the ASG terminates (scale-in, TerminateInstanceInAutoScalingGroup, a health
  replacement) is deregistered first, and terminated only after the deregistration delay, so
  the requests it holds finish while the load balancer sends it no new ones.
moto does neither: Standby instances stay registered and "healthy", and an ASG termination
terminates the instance at once and leaves it registered. fleetd calls `AsgTargetSync.sync`
every tick so the local fleet behaves like AWS here; for a terminated instance it keeps the
instance's container until the drain is over (fleetd asks `draining_instances()`).

Two more, also called by fleetd every tick:
- `AsgTagPropagation`: tags an ASG propagates at launch override the launch template's tags of
  the same key on AWS; moto lets the launch template's win (every group's instances would be
  named `web`).
- `InitialHealth`: a target registered for the first time is `initial` on AWS and gets no
  traffic until it passes the target group's health check HealthyThresholdCount times in a row;
  moto reports it `healthy` the moment it is registered, before its container has even booted.

Production code never relies on this module; it runs only inside the local fleet's fleetd.
"""

from __future__ import annotations

import logging
import time
import urllib.error
import urllib.request
from concurrent.futures import Future, ThreadPoolExecutor

log = logging.getLogger("fleetd.standins")

# EC2 states of an instance that is going or gone: a registration of it is drained, then removed.
GONE_STATES = ("shutting-down", "terminated", "stopping", "stopped", None)


def _registered(elbv2, tg_arn: str) -> dict[str, dict]:
    descs = elbv2.describe_target_health(TargetGroupArn=tg_arn)["TargetHealthDescriptions"]
    return {d["Target"]["Id"]: d["Target"] for d in descs}


def tg_short_name(tg_arn: str) -> str:
    """`local-web` from arn:...:targetgroup/local-web/<id>."""
    return tg_arn.rsplit("/", 2)[-2]


def describe_groups(autoscaling, groups) -> list[dict]:
    """ASG descriptions: `groups` is a list of names (described here) or of descriptions."""
    groups = list(groups)
    if groups and isinstance(groups[0], str):
        found = []
        for chunk in (groups[i:i + 50] for i in range(0, len(groups), 50)):
            found.extend(autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=chunk)["AutoScalingGroups"])
        return found
    return groups


def _ec2_state(instances: dict[str, dict], iid: str) -> str | None:
    return instances.get(iid, {}).get("State", {}).get("Name")


class AsgTargetSync:
    """Deregister/register ASG members as AWS would, draining for the target group's delay.

    While an instance drains it stays registered in the emulator (so a caller waiting for the
    deregistration waits the delay, as on AWS) but gets no new requests: the balancer already
    leaves out every instance that is not InService and running. A terminated instance drains
    the same way; its container stays up meanwhile, so the requests it holds can finish.
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

    def draining_instances(self) -> set[str]:
        """Instances with a drain under way in some target group (a terminated one keeps its container)."""
        return {iid for _, iid in self.draining}

    def _drain(self, tg_arn: str, iid: str, target: dict, why: str, now: float, actions: list[str]) -> None:
        key = (tg_arn, iid)
        due = self.draining.setdefault(key, now + self.delay(tg_arn))
        if key not in self._announced:
            self._announced.add(key)
            actions.append(f"draining {iid} ({why}) in {tg_short_name(tg_arn)} for {self.delay(tg_arn)}s")
        if now >= due:
            self.elbv2.deregister_targets(TargetGroupArn=tg_arn, Targets=[target])
            self.draining.pop(key, None)
            self._announced.discard(key)
            actions.append(f"deregistered {iid} ({why}) from {tg_short_name(tg_arn)}")

    def sync(self, instances: dict[str, dict], groups) -> list[str]:
        """One pass over every target group of the given ASGs (names, or descriptions as
        DescribeAutoScalingGroups returns them); the actions taken, for the log."""
        actions: list[str] = []
        now = self.clock()
        lifecycle: dict[str, str] = {}
        members_of: dict[str, set[str]] = {}  # target group -> instances of the ASGs attached to it
        for group in describe_groups(self.autoscaling, groups):
            members = {i["InstanceId"]: i["LifecycleState"] for i in group["Instances"]}
            lifecycle.update(members)
            for tg_arn in group.get("TargetGroupARNs", []):
                members_of.setdefault(tg_arn, set()).update(members)
        for tg_arn in sorted(members_of):
            tg_name = tg_short_name(tg_arn)
            registered = _registered(self.elbv2, tg_arn)
            members = members_of[tg_arn]
            for iid in sorted(members):
                state, ec2_state = lifecycle[iid], _ec2_state(instances, iid) or "terminated"
                should_be_in = state == "InService" and ec2_state == "running"
                key = (tg_arn, iid)
                if iid in registered and not should_be_in:
                    self._drain(tg_arn, iid, registered[iid], f"{state}, {ec2_state}", now, actions)
                elif should_be_in:
                    if self.draining.pop(key, None) is not None:
                        self._announced.discard(key)
                        actions.append(f"{iid} back InService before its drain ended in {tg_name}")
                    if iid not in registered:
                        self.elbv2.register_targets(TargetGroupArn=tg_arn,
                                                    Targets=[{"Id": iid, "Port": self.port(tg_arn)}])
                        actions.append(f"registered {iid} (InService) in {tg_name}")
            # Instances the ASG terminated: moto removed them from the group and terminated them at
            # once, but left them registered. AWS deregisters first and terminates after the delay:
            # drain them (their containers stay up meanwhile), then deregister.
            for iid, target in registered.items():
                if iid not in members and _ec2_state(instances, iid) in GONE_STATES:
                    self._drain(tg_arn, iid, target, f"{_ec2_state(instances, iid) or 'gone'}, left its ASG",
                                now, actions)
            # A drain whose target someone else deregistered meanwhile is over.
            for key in [k for k in self.draining if k[0] == tg_arn and k[1] not in registered]:
                self.draining.pop(key)
                self._announced.discard(key)
        for key in [k for k in self.draining if k[0] not in members_of]:
            self.draining.pop(key)  # the target group is no longer attached to any ASG
            self._announced.discard(key)
        for action in actions:
            log.info("AWS stand-in: %s", action)
        return actions


class AsgTagPropagation:
    """Give ASG-launched instances the tags their ASG propagates, over the launch template's.

    AWS: when a launch template and an ASG both tag instances with the same key, the ASG's value
    wins. moto keeps the launch template's: all groups share one launch template (Name=web), so
    an `api` group's instances would be named `web`. Each member is looked at once (the first
    time fleetd sees it in its group), as AWS tags only at launch.
    """

    def __init__(self, ec2):
        self.ec2 = ec2
        self.seen: set[str] = set()

    def sync(self, instances: dict[str, dict], groups: list[dict]) -> list[str]:
        actions = []
        for group in groups:
            want = {t["Key"]: t["Value"] for t in group.get("Tags", []) if t.get("PropagateAtLaunch")}
            for member in group["Instances"]:
                iid = member["InstanceId"]
                inst = instances.get(iid)
                if iid in self.seen or inst is None:
                    continue
                self.seen.add(iid)
                have = {t["Key"]: t["Value"] for t in inst.get("Tags", [])}
                diff = {k: v for k, v in want.items() if have.get(k) != v}
                if diff and inst["State"]["Name"] in ("pending", "running"):
                    self.ec2.create_tags(Resources=[iid], Tags=[{"Key": k, "Value": v} for k, v in diff.items()])
                    actions.append(f"tagged {iid} as its ASG {group['AutoScalingGroupName']} propagates: "
                                   + ", ".join(f"{k}={v}" for k, v in sorted(diff.items())))
        for action in actions:
            log.info("AWS stand-in: %s", action)
        return actions


def _matches(code: int, matcher: str) -> bool:
    """An ALB success-codes matcher: `200`, `200,202` or `200-299`."""
    for part in (matcher or "200").split(","):
        low, _, high = part.strip().partition("-")
        if low.isdigit() and int(low) <= code <= int(high or low):
            return True
    return False


def http_probe(url: str, timeout: float) -> int:
    """The HTTP status a health check gets (0: no answer)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except (OSError, ValueError):
        return 0


class InitialHealth:
    """Keep a target out of traffic until it has passed its health check, as AWS's `initial` does.

    moto reports every registered target `healthy` at once; an instance an ASG has just launched
    (a replacement, a scale-out) would get requests before its container has booted, let alone
    its app. Here an instance is admitted once it has answered the target group's health check
    (path, port, success codes) HealthyThresholdCount times in a row, probed every `interval`
    seconds (0.5 s rather than the target group's interval, to keep the local fleet quick), in the
    background so fleetd's loop never waits on a probe. After that, the balancer's own health
    checks (HAProxy) take over.

    Deliberately narrower than AWS, which puts every (re)registration in `initial`: an instance
    that has passed once is admitted at once when it comes back (from Standby, say). The
    emulator still reports it `healthy` at once, and a deploy waiting on that report would
    otherwise run ahead of the balancer.
    """

    def __init__(self, elbv2, probe=http_probe, clock=time.monotonic, interval: float = 0.5,
                 admitted=(), executor=None):
        self.elbv2 = elbv2
        self.probe = probe
        self.clock = clock
        self.interval = interval
        self.admitted: set[str] = set(admitted)
        self.passes: dict[str, int] = {}
        self.next_at: dict[str, float] = {}
        self.inflight: dict[str, Future] = {}
        self._settings: dict[str, dict] = {}
        self._pool = executor or ThreadPoolExecutor(max_workers=8, thread_name_prefix="initial-health")

    def settings(self, tg_arn: str) -> dict:
        if tg_arn not in self._settings:
            tg = self.elbv2.describe_target_groups(TargetGroupArns=[tg_arn])["TargetGroups"][0]
            port = tg.get("HealthCheckPort") or "traffic-port"
            self._settings[tg_arn] = {
                "path": tg.get("HealthCheckPath") or "/",
                "port": tg["Port"] if port == "traffic-port" else int(port),
                "threshold": int(tg.get("HealthyThresholdCount") or 5),
                "timeout": min(float(tg.get("HealthCheckTimeoutSeconds") or 5), 2.0),
                "matcher": (tg.get("Matcher") or {}).get("HttpCode", "200"),
            }
        return self._settings[tg_arn]

    def admit(self, tg_arn: str, candidates: dict[str, str]) -> dict[str, str]:
        """The candidates (instance id -> private IP) that may get traffic now."""
        settings = self.settings(tg_arn)
        now = self.clock()
        allowed = {}
        for iid, ip in candidates.items():
            if iid in self.admitted:
                allowed[iid] = ip
                continue
            future = self.inflight.get(iid)
            if future is not None and future.done():
                del self.inflight[iid]
                ok = _matches(future.result(), settings["matcher"])
                self.passes[iid] = self.passes.get(iid, 0) + 1 if ok else 0
                if self.passes[iid] >= settings["threshold"]:
                    self.admitted.add(iid)
                    self.passes.pop(iid, None)
                    log.info("AWS stand-in: %s passed its health check %d times: healthy in %s", iid,
                             settings["threshold"], tg_short_name(tg_arn))
                    allowed[iid] = ip
                    continue
            if iid not in self.inflight and now >= self.next_at.get(iid, 0.0):
                self.next_at[iid] = now + self.interval
                url = f"http://{ip}:{settings['port']}{settings['path']}"
                self.inflight[iid] = self._pool.submit(self.probe, url, settings["timeout"])
        return allowed

    def forget(self, keep) -> None:
        """Drop what is known of instances no longer in `keep` (the emulator's instances)."""
        keep = set(keep)
        for table in (self.passes, self.next_at, self.inflight):
            for iid in [i for i in table if i not in keep]:
                table.pop(iid)
        self.admitted &= keep

"""Plan a rolling deploy over EC2 hosts, most of them in Auto Scaling groups: pure logic, no AWS calls.

``plan_deploy(hosts, groups, settings)`` decides which hosts are skipped (already on the version),
which are left alone (an operator's Standby, Pending*, Terminating*...), the batches (canary first;
with the ``zonal`` strategy one AZ after the other), the seconds each batch bakes in service before
the next, the batches that end at a checkpoint, the capacity each group needs during the rollout
(MinSize lowered, DesiredCapacity/MaxSize surged) and why the deploy must not start (``refusals``).
The filters ``ec2fleet.fleet.deploy_plan`` and ``ec2fleet.fleet.deploy_batches`` (the older,
capacity-blind planner) are thin wrappers over it.

Rules every batch keeps:

* at most ``max_az_share`` of the hosts to deploy of each (Auto Scaling group, AZ) pair;
* per group, at most ``InService + surge - min_healthy`` of its InService instances out
  (instances an interrupted run left in Standby are out already and do not count);
* desired capacity ``D + surge - out`` never below the MinSize in force during the rollout;
* at most ``batch_size`` hosts;
* ``zonal``: hosts of one AZ only, and at most the AZ's targeted hosts in service minus
  ``zonal_min_healthy_percent`` of them out.

What the plan adds to the batches stays small whatever the fleet (one number per batch, one entry
per AZ and per checkpoint): it may go into the deploy lock's record.

Runs on the controller only, but written for any Python ansible-core supports (3.8+).
"""

from __future__ import annotations

import math
import re
from collections import Counter, deque

from ansible.module_utils.parsing.convert_bool import boolean

IN_SERVICE = "InService"
# Where an interrupted deploy leaves the hosts of the batch it was running.
STANDBY_STATES = frozenset({"Standby", "EnteringStandby"})
HEALTHY = "Healthy"
CAPACITY_MODES = ("auto", "reduce", "surge", "none")
STRATEGIES = ("batches", "zonal")
# The deploy keeps per-group state (suspended processes, original capacity) in one SSM parameter
# of at most 4 KiB (standard tier).
MAX_GROUPS = 20

DEFAULTS = {
    "version": None,
    "force": False,
    "canary": 1,
    "batch_size": 1,
    "max_az_share": "50%",
    "min_healthy": "50%",
    "capacity": "auto",
    "recovered_standby": (),
    "strategy": "batches",
    "bake_seconds": 0,
    "canary_bake_seconds": 0,
    "checkpoints": (),
    "zonal_monitor_seconds": 0,
    "zonal_min_healthy_percent": 0,
}


class DeployPlanError(ValueError):
    """Bad input (a caller's mistake, not a fleet problem); the filters raise it as AnsibleFilterError."""


def natural_key(text):
    """``web-2`` before ``web-10``; None sorts as the empty string."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", "" if text is None else str(text))]


def _group_key(group):
    """Auto Scaling groups in natural order, then the hosts outside any group (None)."""
    return (1, []) if group is None else (0, natural_key(group))


def parse_amount(value, what, minimum=1):
    """``("count", n)`` or ``("percent", p)`` from 3, "3" or "25%".

    ``minimum`` 1: a count of at least 1 or a percentage in (0%, 100%]; 0: at least 0, [0%, 100%].
    """
    if isinstance(value, bool) or value is None:
        raise DeployPlanError(f"{what} must be a count or a percentage like '25%', got {value!r}")
    text = str(value).strip()
    try:
        if text.endswith("%"):
            percent = float(text[:-1])
            if not (0 < percent <= 100 if minimum else 0 <= percent <= 100):
                raise ValueError
            return "percent", percent
        count = int(text)
        if count < minimum:
            raise ValueError
        return "count", count
    except ValueError:
        span = "(0%, 100%]" if minimum else "[0%, 100%]"
        raise DeployPlanError(
            f"{what} must be a count of at least {minimum} or a percentage in {span}, got {value!r}"
        ) from None


def resolve(amount, total):
    """The count an amount means out of ``total`` hosts: percentages round down, at least 1."""
    kind, number = amount
    if kind == "count":
        return number
    return max(1, math.floor(total * number / 100 + 1e-9))


def resolve_up(amount, total):
    """min_healthy out of a desired capacity of ``total``: percentages round up, counts at most ``total``."""
    kind, number = amount
    if kind == "count":
        return min(number, total)
    return min(total, math.ceil(total * number / 100 - 1e-9))


def _check_hosts(hosts):
    if not isinstance(hosts, (list, tuple)):
        raise DeployPlanError(f"expects a list of host dicts, got {type(hosts).__name__}")
    seen = set()
    for host in hosts:
        if not isinstance(host, dict) or not host.get("name"):
            raise DeployPlanError(f"every host needs a name, got {host!r}")
        name = str(host["name"])
        if name in seen:
            raise DeployPlanError(f"host {name} is listed twice")
        seen.add(name)
    return sorted(hosts, key=lambda h: natural_key(h["name"]))


def _check_canary(canary):
    try:
        canary = int(canary)
    except (TypeError, ValueError):
        raise DeployPlanError(f"canary must be a whole number, got {canary!r}") from None
    if canary < 0:
        raise DeployPlanError(f"canary must be 0 or more, got {canary}")
    return canary


def _check_force(force):
    try:
        return boolean(force, strict=True)
    except TypeError:
        raise DeployPlanError(f"force must be a boolean, got {force!r}") from None


def _on_version(host, version):
    current = host.get("current_version")
    return current is not None and str(current) == str(version)


def _schedule(queues, pair_caps, group_limits, size, canary, batch_limit=None):
    """Fill the batches.

    ``queues``: {(group, az): deque of (name, counts)} in deploy order, ``counts`` False for hosts
    already out of service (they do not count against the group limit; they come first).
    ``pair_caps``: {(group, az): most hosts of the pair in one batch}. ``group_limits``: {group:
    most counting hosts of the group in one batch, or None}. The canary batch (``canary`` hosts at
    most) comes from the group with the most hosts to deploy. ``batch_limit``: most counting hosts
    in one batch, or None.
    Returns the batches (names in natural order) and whether the first one is a canary.
    """
    names = {pair: (_group_key(pair[0]), natural_key(pair[1])) for pair in queues}
    pairs = sorted(queues, key=names.get)
    left = Counter()
    for (group, _az), queue in queues.items():
        left[group] += len(queue)

    def take(wanted, only_group):
        batch, in_pair, in_group, counted = [], Counter(), Counter(), Counter()
        while len(batch) < wanted:
            full = batch_limit is not None and sum(counted.values()) >= batch_limit
            best = None
            for pair in pairs:
                group = pair[0]
                queue = queues[pair]
                if not queue or in_pair[pair] >= pair_caps[pair]:
                    continue
                if only_group is not None and group != only_group[0]:
                    continue
                limit = group_limits.get(group)
                if queue[0][1] and (full or (limit is not None and counted[group] >= limit)):
                    continue
                # Round robin over groups (the one with most hosts left first), then over its AZs.
                key = (in_group[group], -left[group], names[pair][0], in_pair[pair], -len(queue), names[pair][1])
                if best is None or key < best[0]:
                    best = (key, pair)
            if best is None:
                break
            group = best[1][0]
            name, counts = queues[best[1]].popleft()
            batch.append(name)
            in_pair[best[1]] += 1
            in_group[group] += 1
            counted[group] += counts
            left[group] -= 1
        return sorted(batch, key=natural_key)

    batches = []
    if canary and left:
        largest = min(left, key=lambda g: (-left[g], _group_key(g)))
        batches.append(take(min(canary, size), (largest,)))
    while any(queues.values()):
        batches.append(take(size, None))
    return batches, bool(canary) and len(batches) > 1


def plan_batches(hosts, version, force=False, canary=1, batch_size=1, max_az_share="50%"):
    """The capacity-blind planner behind the ``deploy_batches`` filter: skip, canary, batches, the
    share cap per (group, AZ) pair; hosts need ``name`` and may have ``az``, ``asg``, ``current_version``."""
    if not version:
        raise DeployPlanError("the target version is required")
    hosts = _check_hosts(hosts)
    canary = _check_canary(canary)
    size_amount = parse_amount(batch_size, "batch_size")
    share_amount = parse_amount(max_az_share, "max_az_share")
    force = _check_force(force)
    skipped, queues = [], {}
    for host in hosts:
        if not force and _on_version(host, version):
            skipped.append(str(host["name"]))
        else:
            pair = (host.get("asg") or None, str(host.get("az") or ""))
            queues.setdefault(pair, deque()).append((str(host["name"]), True))
    total = sum(map(len, queues.values()))
    caps = {pair: resolve(share_amount, len(queue)) for pair, queue in queues.items()}
    batches, _canary = _schedule(queues, caps, {}, resolve(size_amount, total), canary)
    return {"skipped": skipped, "batches": batches}


def _settings(settings):
    if settings is None:
        settings = {}
    if not isinstance(settings, dict):
        raise DeployPlanError(f"settings must be a dict, got {type(settings).__name__}")
    unknown = sorted(set(settings) - set(DEFAULTS))
    if unknown:
        raise DeployPlanError(f"unknown settings {unknown}; known: {sorted(DEFAULTS)}")
    merged = dict(DEFAULTS)
    merged.update({key: value for key, value in settings.items() if value is not None})
    if not merged["version"]:
        raise DeployPlanError("the target version is required (settings.version)")
    merged["version"] = str(merged["version"])
    merged["force"] = _check_force(merged["force"])
    merged["canary"] = _check_canary(merged["canary"])
    merged["batch_size"] = parse_amount(merged["batch_size"], "batch_size")
    merged["max_az_share"] = parse_amount(merged["max_az_share"], "max_az_share")
    merged["min_healthy"] = parse_amount(merged["min_healthy"], "min_healthy", minimum=0)
    mode = str(merged["capacity"]).strip().lower()
    if mode not in CAPACITY_MODES:
        raise DeployPlanError(f"capacity must be one of {', '.join(CAPACITY_MODES)}, got {merged['capacity']!r}")
    merged["capacity"] = mode
    recovered = merged["recovered_standby"]
    if isinstance(recovered, str) or not isinstance(recovered, (list, tuple, set, frozenset)):
        raise DeployPlanError(f"recovered_standby must be a list of instance ids, got {recovered!r}")
    merged["recovered_standby"] = frozenset(str(i) for i in recovered)
    strategy = str(merged["strategy"]).strip().lower()
    if strategy not in STRATEGIES:
        raise DeployPlanError(f"strategy must be one of {', '.join(STRATEGIES)}, got {merged['strategy']!r}")
    merged["strategy"] = strategy
    for key in ("bake_seconds", "canary_bake_seconds", "zonal_monitor_seconds"):
        merged[key] = _whole(merged[key], key, 0, None)
    merged["zonal_min_healthy_percent"] = _whole(merged["zonal_min_healthy_percent"], "zonal_min_healthy_percent", 0, 99)
    points = merged["checkpoints"]
    if isinstance(points, str) or not isinstance(points, (list, tuple, set, frozenset)):
        raise DeployPlanError(f"checkpoints must be a list of percentages from 1 to 99, got {points!r}")
    merged["checkpoints"] = sorted({_whole(p, "checkpoints", 1, 99) for p in points})
    return merged


def _whole(value, what, lowest, highest):
    """A whole number within [lowest, highest] (highest None: no upper bound)."""
    try:
        if isinstance(value, bool):
            raise ValueError
        number = int(str(value).strip())
    except ValueError:
        number = None
    if number is None or number < lowest or (highest is not None and number > highest):
        span = f"from {lowest} to {highest}" if highest is not None else f"of at least {lowest}"
        raise DeployPlanError(f"{what} must be whole numbers {span}, got {value!r}")
    return number


def _groups(groups):
    """{name: group dict}, from that dict or from a list of autoscaling_group_info results."""
    if groups is None:
        return {}
    if isinstance(groups, dict):
        items = groups.items()
    elif isinstance(groups, (list, tuple)):
        try:
            items = [(g["auto_scaling_group_name"], g) for g in groups]
        except (KeyError, TypeError):
            raise DeployPlanError("groups as a list must be autoscaling_group_info results "
                                  "(dicts with auto_scaling_group_name)") from None
    else:
        raise DeployPlanError(f"groups must be a dict of Auto Scaling groups by name, got {type(groups).__name__}")
    result = {}
    for name, group in items:
        if not isinstance(group, dict):
            raise DeployPlanError(f"group {name}: expected a dict, got {type(group).__name__}")
        try:
            numbers = {key: int(group[key]) for key in ("min_size", "max_size", "desired_capacity")}
        except (KeyError, TypeError, ValueError):
            raise DeployPlanError(
                f"group {name}: needs whole numbers min_size, max_size and desired_capacity"
            ) from None
        instances = {}
        for instance in group.get("instances") or []:
            if not isinstance(instance, dict) or not instance.get("instance_id"):
                raise DeployPlanError(f"group {name}: every instance needs an instance_id, got {instance!r}")
            instances[str(instance["instance_id"])] = instance
        result[str(name)] = dict(group, **numbers, instances=instances)
    return result


def _count_word(n, word):
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def plan_deploy(hosts, groups, settings):
    """Plan a rolling deploy. See the module docstring and the ``deploy_plan`` filter's documentation.

    Returns {batches, skipped, left_alone, capacity, min_healthy, refusals, canary}.
    """
    opts = _settings(settings)
    hosts = _check_hosts(hosts)
    groups = _groups(groups)
    version, mode, recovered = opts["version"], opts["capacity"], opts["recovered_standby"]
    refusals, host_refusals, skipped, left_alone = [], [], [], []
    serving = Counter()  # AZ -> targeted hosts in service before the rollout (zonal_min_healthy_percent)
    queues = {}  # (group, az) -> deque of (name, counts against the group limit)
    missing = {}  # group not described -> its hosts

    regions = sorted({str(h["region"]) for h in hosts if h.get("region")}, key=natural_key)
    if len(regions) > 1:
        refusals.append(f"the targets span {len(regions)} regions ({', '.join(regions)}): "
                        "deploy one region at a time: -e deploy_target=...")

    # Recovered hosts (already out of service) first in their pair's queue, then natural order.
    targets = []
    for host in hosts:
        name, group_name = str(host["name"]), host.get("asg") or None
        instance_id = str(host.get("instance_id") or "")
        state, health, az = host.get("lifecycle_state"), host.get("health_status"), host.get("az")
        if group_name is not None:
            group_name = str(group_name)
            if not instance_id:
                raise DeployPlanError(f"host {name} is in ASG {group_name} but has no instance_id")
            group = groups.get(group_name)
            if group is None:
                missing.setdefault(group_name, []).append(name)
            else:
                instance = group["instances"].get(instance_id)
                if instance is None:
                    left_alone.append({"name": name, "instance_id": instance_id,
                                       "reason": f"not an instance of ASG {group_name} (any more)"})
                    host_refusals.append(f"host {name} ({instance_id}) is not an instance of ASG {group_name}: "
                                         "refresh the inventory (--flush-cache) or leave it out of deploy_target")
                    continue
                # DescribeAutoScalingGroups is fresher than the inventory.
                state = instance.get("lifecycle_state") or state
                health = instance.get("health_status") or health
                az = az or instance.get("availability_zone")
            is_recovered = instance_id in recovered and state in STANDBY_STATES
            if group is not None and state != IN_SERVICE and not is_recovered:
                if state in STANDBY_STATES:
                    reason = f"{state}, not left by an interrupted deploy (an operator's: exit Standby to deploy it)"
                else:
                    reason = f"lifecycle state {state}"
                left_alone.append({"name": name, "instance_id": instance_id, "reason": reason})
                continue
        else:
            is_recovered = False
            if health and str(health) != HEALTHY:
                host_refusals.append(f"host {name} ({instance_id or 'no instance id'}) is {health}: "
                                     "fix it or leave it out of deploy_target")
        if not opts["force"] and instance_id not in recovered and _on_version(host, version):
            skipped.append(name)
            serving[str(az or "")] += 1
            continue
        targets.append((not is_recovered, name, group_name, str(az or ""), instance_id))
        serving[str(az or "")] += not is_recovered
    for counts, name, group_name, az, _id in sorted(targets, key=lambda t: (t[0], natural_key(t[1]))):
        queues.setdefault((group_name, az), deque()).append((name, counts))

    target_groups = sorted({g for g, _az in queues if g is not None}, key=natural_key)
    for group_name in sorted(missing, key=natural_key):
        refusals.append(f"ASG {group_name} (hosts {', '.join(missing[group_name])}) was not described: "
                        "pass its autoscaling_group_info result in groups")
    described = [g for g in target_groups if g not in missing]
    if len(target_groups) > MAX_GROUPS:
        refusals.append(f"{len(target_groups)} Auto Scaling groups to deploy, at most {MAX_GROUPS} in one run "
                        "(the deploy keeps per-group state in one SSM parameter of at most 4 KiB): "
                        "split the deploy with deploy_target")

    # Per group: the limit on InService hosts out in one batch, from min_healthy and the mode.
    info, limits, min_healthy = {}, {}, {}
    for group_name in described:
        group = groups[group_name]
        desired, min_size, max_size = group["desired_capacity"], group["min_size"], group["max_size"]
        instances = group["instances"].values()
        in_service = [i for i in instances if i.get("lifecycle_state") == IN_SERVICE]
        out_already = sum(1 for (g, _az), q in queues.items() if g == group_name for _n, c in q if not c)
        to_take_out = sum(1 for (g, _az), q in queues.items() if g == group_name for _n, c in q if c)
        where = f"ASG {group_name}"
        capacity_type = group.get("desired_capacity_type")
        if capacity_type not in (None, "", "units"):
            refusals.append(f"{where} uses weighted capacity (desired_capacity_type {capacity_type}): counts "
                            "do not mean hosts; set desired_capacity_type to units or leave it out of deploy_target")
        weighted = sorted(str(i["instance_id"]) for i in instances
                          if i.get("weighted_capacity") not in (None, "", 1, "1"))
        if weighted:
            refusals.append(f"{where} has instances with a weighted capacity other than 1 ({', '.join(weighted)}): "
                            "counts do not mean hosts; remove the instance weights or leave it out of deploy_target")
        if group.get("load_balancer_names"):
            refusals.append(f"{where} has Classic Load Balancers attached ({', '.join(group['load_balancer_names'])}): "
                            "the deploy neither drains them nor waits for health there; move to target groups "
                            "(target_group_arns) or detach them")
        if len(in_service) != desired:
            others = Counter(str(i.get("lifecycle_state")) for i in instances if i.get("lifecycle_state") != IN_SERVICE)
            detail = "".join(f", {n} {state}" for state, n in sorted(others.items()))
            refusals.append(f"{where} is not at desired capacity (DesiredCapacity {desired}, "
                            f"{len(in_service)} InService{detail}): wait until it settles or set DesiredCapacity")
        unhealthy = sorted(str(i["instance_id"]) for i in in_service if i.get("health_status") != HEALTHY)
        if unhealthy:
            refusals.append(f"{where} has unhealthy InService instances ({', '.join(unhealthy)}): let the group "
                            "replace them (ReplaceUnhealthy) or set them Healthy before deploying")
        keep = resolve_up(opts["min_healthy"], desired)
        min_healthy[group_name] = keep
        room = len(in_service) - keep  # InService hosts that may be out at once without a surge
        surge, limit = 0, None
        if mode == "auto":
            if to_take_out and room < 1:
                surge = 1 - room
            limit = room + surge
        elif mode in ("reduce", "none"):
            limit = room
            if to_take_out and room < 1:
                fit = "" if desired + 1 - room <= max_size else f", MaxSize {max_size} to at least {desired + 1 - room}"
                refusals.append(f"{where}: min_healthy {keep} of DesiredCapacity {desired} ({len(in_service)} "
                                f"InService) leaves no host to take out; it needs a surge of {1 - room}{fit} "
                                f"(capacity=auto or surge, now {mode}) or a lower min_healthy")
            if mode == "none":
                limit = min(limit, desired - min_size)
                if to_take_out and desired - min_size < 1:
                    refusals.append(f"{where}: DesiredCapacity {desired} is at MinSize {min_size}: no instance can "
                                    "enter Standby; use capacity=reduce, auto or surge or lower MinSize")
        limits[group_name] = None if limit is None else max(1, limit)
        info[group_name] = (desired, min_size, max_size, keep, surge, out_already)

    total = sum(map(len, queues.values()))
    caps = {pair: resolve(opts["max_az_share"], len(queue)) for pair, queue in queues.items()}
    counted = {pair: [name for name, counts in queue if counts] for pair, queue in queues.items()}
    zones = []
    if opts["strategy"] == "zonal":
        batches, has_canary, zones = _zonal(queues, caps, limits, opts, serving, refusals)
    else:
        batches, has_canary = _schedule(queues, caps, limits, resolve(opts["batch_size"], total), opts["canary"])

    # The capacity each group needs while its hosts are out.
    capacity = {}
    group_of = {name: pair[0] for pair, names in counted.items() for name in names}
    for group_name in described:
        desired, min_size, max_size, keep, surge, out_already = info[group_name]
        most_out = max([sum(1 for n in batch if group_of.get(n) == group_name) for batch in batches] or [0])
        if mode == "surge":
            surge = most_out
        during_min = min_size
        if mode in ("auto", "reduce"):
            during_min = min(min_size, desired + surge - most_out)
        peak = desired + surge + out_already  # every host back InService, the surge still there
        during_max = max_size
        if peak > max_size:
            if mode in ("auto", "surge"):
                during_max = peak
            else:
                refusals.append(f"ASG {group_name}: returning {_count_word(out_already, 'instance')} left in Standby "
                                f"needs MaxSize {peak} (now {max_size}): raise MaxSize or use capacity=auto")
        during = {"min_size": during_min, "max_size": during_max, "desired_capacity": desired + surge}
        original = {"min_size": min_size, "max_size": max_size, "desired_capacity": desired}
        if during != original:
            capacity[group_name] = {"original": original, "during": during, "surge": surge}

    checkpoints = _checkpoints(batches, opts["checkpoints"])
    return {
        "batches": batches,
        "skipped": skipped,
        "left_alone": left_alone,
        "capacity": capacity,
        "min_healthy": min_healthy,
        "refusals": refusals + host_refusals,
        "canary": len(batches[0]) if has_canary else 0,
        "strategy": opts["strategy"],
        "bake": _bakes(batches, has_canary, checkpoints, zones, opts),
        "checkpoints": checkpoints,
        "zones": zones,
    }


def _zonal(queues, caps, limits, opts, serving, refusals):
    """One AZ after the other, in natural order, the canary first in the first one; each AZ's batches
    by the usual rules (a percentage batch size is of the AZ's hosts to deploy), and at most the AZ's
    serving hosts minus zonal_min_healthy_percent of them out at once.
    Returns (batches, whether the first is a canary, [{az, batches: [first, last], monitor}])."""
    percent = opts["zonal_min_healthy_percent"]
    batches, zones = [], []
    for az in sorted({az for _group, az in queues}, key=natural_key):
        wave = {pair: queue for pair, queue in queues.items() if pair[1] == az}
        hosts = sum(map(len, wave.values()))
        limit = None
        if percent:
            keep = math.ceil(serving[az] * percent / 100 - 1e-9)
            room = serving[az] - keep
            if room < 1 and any(counts for queue in wave.values() for _name, counts in queue):
                refusals.append(f"AZ {az or '(none)'}: zonal_min_healthy_percent {percent} keeps {keep} of its "
                                f"{serving[az]} targeted hosts in service, so none can leave: lower it, or deploy "
                                "with the batches strategy")
            limit = max(1, room)
        planned, _canary = _schedule(wave, caps, limits, resolve(opts["batch_size"], hosts),
                                     opts["canary"] if not batches else 0, limit)
        first = len(batches) + 1
        batches += planned
        monitor = opts["zonal_monitor_seconds"] if not zones else opts["bake_seconds"]
        zones.append({"az": az, "batches": [first, len(batches)], "monitor": monitor})
    return batches, bool(opts["canary"]) and len(batches) > 1, zones


def _checkpoints(batches, percents):
    """Each checkpoint at the first batch boundary at or past its percentage of the hosts to deploy;
    percentages reached by the same batch share one checkpoint, and none is after the last batch
    (the rollout is over there)."""
    total = sum(map(len, batches))
    found, done = [], 0
    ends = []
    for number, batch in enumerate(batches, start=1):
        done += len(batch)
        ends.append((number, done))
    for percent in percents:
        number, hosts = next(((n, d) for n, d in ends if d * 100 >= percent * total), (None, None))
        if number is None or number == len(batches):
            continue
        if found and found[-1]["batch"] == number:
            found[-1]["percents"].append(percent)
            continue
        found.append({"number": len(found) + 1, "batch": number, "percents": [percent], "hosts": hosts, "of": total})
    return found


def _bakes(batches, has_canary, checkpoints, zones, opts):
    """Seconds each batch stays in service, watched, before the next starts (or the rollout ends):
    every batch bake_seconds, the canary and a batch ending at a checkpoint canary_bake_seconds,
    each AZ's last batch its monitor; the longest applies."""
    bake = [opts["bake_seconds"]] * len(batches)
    longer = [(1, opts["canary_bake_seconds"])] if has_canary else []
    longer += [(point["batch"], opts["canary_bake_seconds"]) for point in checkpoints]
    longer += [(zone["batches"][1], zone["monitor"]) for zone in zones]
    for number, seconds in longer:
        bake[number - 1] = max(bake[number - 1], seconds)
    return bake

"""Jinja2 filter ``ec2fleet.fleet.deploy_batches``: split the hosts of a rolling deploy into batches.

Pure logic, no AWS calls: the playbook passes the hosts (from the inventory's hostvars) and the
rollout policy; the filter returns which hosts are skipped and the batches, in order.
"""

from __future__ import annotations

DOCUMENTATION = r"""
name: deploy_batches
short_description: Plan the batches of a rolling deploy (canary, batch size, per-AZ share)
description:
  - Takes a list of host dicts (C(name), C(az), C(asg), C(current_version)) and returns a dict
    with C(skipped), the names of the hosts left out, and C(batches), lists of host names in order.
  - Hosts already on O(version) are skipped (sorted by name) unless O(force).
  - The first batch is the canary (O(canary) hosts, default 1; 0 for none), then batches of
    O(batch_size) hosts, a count (V(3)) or a percentage of the hosts to deploy (V(25%), rounded
    down, at least 1, as Ansible's C(serial) does).
  - No batch takes more than O(max_az_share) of any one AZ's hosts to deploy, a percentage
    (rounded down, at least 1) or a count; a batch the cap stops early is smaller than asked.
    Hosts without an AZ count as one AZ of their own.
  - Each batch is spread across AZs (round robin, the AZ with the most hosts left first) and the
    result is deterministic (names in natural order, ties broken by AZ name).
positional: _input, version
options:
  _input:
    description: The hosts, dicts with at least C(name).
    type: list
    elements: dict
    required: true
  version:
    description: The version being deployed.
    type: str
    required: true
  force:
    description: Deploy to hosts already on O(version) too.
    type: bool
    default: false
  canary:
    description: Hosts in the first batch (0 for no canary batch).
    type: int
    default: 1
  batch_size:
    description: Hosts per batch after the canary, a count or a percentage string.
    type: raw
    default: 1
  max_az_share:
    description: Most hosts of one AZ out of service at once, a percentage string or a count.
    type: raw
    default: "50%"
"""

EXAMPLES = r"""
- name: Plan the rollout
  ansible.builtin.set_fact:
    deploy_plan: "{{ deploy_hosts | ec2fleet.fleet.deploy_batches(app_version, canary=1, batch_size='25%', max_az_share='50%') }}"
"""

RETURN = r"""
_value:
  description: C(skipped) (host names) and C(batches) (lists of host names, canary first).
  type: dict
"""

import math
import re
from collections import Counter, deque

try:
    from ansible.errors import AnsibleFilterError
except ImportError:  # pragma: no cover - outside Ansible
    AnsibleFilterError = ValueError


def natural_key(text):
    """``web-2`` before ``web-10``."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", str(text))]


def parse_amount(value, what):
    """``("count", n)`` or ``("percent", p)`` from 3, "3" or "25%"."""
    if isinstance(value, bool):
        raise AnsibleFilterError(f"deploy_batches: {what} must be a count or a percentage like '25%', got {value!r}")
    text = str(value).strip()
    try:
        if text.endswith("%"):
            percent = float(text[:-1])
            if not 0 < percent <= 100:
                raise ValueError
            return "percent", percent
        count = int(text)
        if count < 1:
            raise ValueError
        return "count", count
    except ValueError:
        raise AnsibleFilterError(
            f"deploy_batches: {what} must be a count of at least 1 or a percentage in (0%, 100%], got {value!r}"
        ) from None


def resolve(amount, total):
    """The count an amount means out of ``total`` hosts: percentages round down, at least 1."""
    kind, number = amount
    if kind == "count":
        return number
    return max(1, math.floor(total * number / 100 + 1e-9))


def deploy_batches(hosts, version, force=False, canary=1, batch_size=1, max_az_share="50%"):
    if not version:
        raise AnsibleFilterError("deploy_batches: the target version is required")
    if not isinstance(hosts, (list, tuple)):
        raise AnsibleFilterError(f"deploy_batches: expects a list of host dicts, got {type(hosts).__name__}")
    try:
        canary = int(canary)
    except (TypeError, ValueError):
        raise AnsibleFilterError(f"deploy_batches: canary must be a whole number, got {canary!r}") from None
    if canary < 0:
        raise AnsibleFilterError(f"deploy_batches: canary must be 0 or more, got {canary}")
    size_amount = parse_amount(batch_size, "batch_size")
    share_amount = parse_amount(max_az_share, "max_az_share")

    seen = set()
    skipped, targets = [], []
    for host in hosts:
        if not isinstance(host, dict) or not host.get("name"):
            raise AnsibleFilterError(f"deploy_batches: every host needs a name, got {host!r}")
        name = str(host["name"])
        if name in seen:
            raise AnsibleFilterError(f"deploy_batches: host {name} is listed twice")
        seen.add(name)
        current = host.get("current_version")
        if not force and current is not None and str(current) == str(version):
            skipped.append(name)
        else:
            targets.append(host)

    by_az = {}
    for host in sorted(targets, key=lambda h: (natural_key(h.get("asg") or ""), natural_key(h["name"]))):
        by_az.setdefault(str(host.get("az") or ""), deque()).append(str(host["name"]))
    caps = {az: resolve(share_amount, len(queue)) for az, queue in by_az.items()}
    size = resolve(size_amount, len(targets))

    batches = []
    while any(by_az.values()):
        wanted = canary if (not batches and canary) else size
        batch, taken = [], Counter()
        while len(batch) < wanted:
            eligible = [az for az, queue in by_az.items() if queue and taken[az] < caps[az]]
            if not eligible:
                break
            az = min(eligible, key=lambda a: (taken[a], -len(by_az[a]), a))
            batch.append(by_az[az].popleft())
            taken[az] += 1
        batches.append(sorted(batch, key=natural_key))
    return {"skipped": sorted(skipped, key=natural_key), "batches": batches}


class FilterModule:
    def filters(self):
        return {"deploy_batches": deploy_batches}

"""Jinja2 filter ``ec2fleet.fleet.deploy_batches``: split the hosts of a rolling deploy into batches.

Pure logic, no AWS calls: the playbook passes the hosts (from the inventory's hostvars) and the
rollout policy; the filter returns which hosts are skipped and the batches, in order. A thin
wrapper over ``module_utils/deploy_plan.py`` (``plan_batches``), the code of the
capacity-aware ``ec2fleet.fleet.deploy_plan`` filter.
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
  - No batch takes more than O(max_az_share) of the hosts to deploy of any one (C(asg), C(az))
    pair, a percentage (rounded down, at least 1) or a count; a batch the cap stops early is
    smaller than asked. Hosts without an AZ count as one AZ of their own, hosts without an ASG as
    one group of their own.
  - The canary batch comes from the group with the most hosts to deploy and is at most
    O(batch_size) hosts.
  - Each batch is spread round robin across groups, then across each group's AZs (the one with
    the most hosts left first), and the result is deterministic (names in natural order).
  - Knows nothing about Auto Scaling capacity (MinSize, healthy instances to keep);
    P(ec2fleet.fleet.deploy_plan#filter) plans with it.
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
    description: Deploy to hosts already on O(version) too (V(true)/V(false) strings count as booleans).
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
    description: Most hosts of one (ASG, AZ) pair out of service at once, a percentage string or a count.
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

from ansible_collections.ec2fleet.fleet.plugins.module_utils.deploy_plan import (
    DeployPlanError,
    natural_key,
    plan_batches,
    resolve,
)
from ansible_collections.ec2fleet.fleet.plugins.module_utils.deploy_plan import parse_amount as _parse_amount

try:
    from ansible.errors import AnsibleFilterError
except ImportError:  # pragma: no cover - outside Ansible
    AnsibleFilterError = ValueError

__all__ = ["deploy_batches", "natural_key", "parse_amount", "resolve"]


def parse_amount(value, what):
    """``("count", n)`` or ``("percent", p)`` from 3, "3" or "25%"."""
    try:
        return _parse_amount(value, what)
    except DeployPlanError as exc:
        raise AnsibleFilterError(f"deploy_batches: {exc}") from None


def deploy_batches(hosts, version, force=False, canary=1, batch_size=1, max_az_share="50%"):
    try:
        return plan_batches(hosts, version, force=force, canary=canary, batch_size=batch_size,
                            max_az_share=max_az_share)
    except DeployPlanError as exc:
        raise AnsibleFilterError(f"deploy_batches: {exc}") from None


class FilterModule:
    def filters(self):
        return {"deploy_batches": deploy_batches}

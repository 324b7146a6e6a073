# Copyright: the ec2-fleet project
# Apache License 2.0
"""Filter `ec2fleet.fleet.service_targets`: what ec2fleet.fleet.service_state needs of each host."""

from __future__ import annotations

DOCUMENTATION = r"""
name: service_targets
short_description: The instances of some hosts, as M(ec2fleet.fleet.service_state) takes them
description:
  - Takes hosts' variables (C(hostvars) entries, from the C(ec2fleet.fleet.ec2_fleet) inventory)
    and returns, per host, only C(instance_id), C(asg_name) (null outside an Auto Scaling group)
    and C(target_group_arns). Nothing else of a host's variables reaches the module's arguments
    (a vaulted variable would print in clear text at C(-v)).
  - A host without C(ec2_instance_id) is an error naming it.
options:
  _input:
    description: The hosts' variables.
    type: list
    elements: dict
    required: true
"""

EXAMPLES = r"""
instances: "{{ ['web-1', 'web-2'] | map('extract', hostvars) | ec2fleet.fleet.service_targets }}"
# -> [{instance_id: i-0a..., asg_name: web, target_group_arns: [...]}, ...]
"""

RETURN = r"""
_value:
  description: One dict per host, C(instance_id), C(asg_name), C(target_group_arns).
  type: list
  elements: dict
"""

from collections.abc import Mapping

from ansible.errors import AnsibleFilterError


def service_targets(hosts):
    found = []
    for host in hosts or []:
        if not isinstance(host, Mapping) or not host.get("ec2_instance_id"):
            name = host.get("inventory_hostname", "?") if isinstance(host, Mapping) else repr(host)
            raise AnsibleFilterError(f"service_targets: host {name} has no ec2_instance_id (not an EC2 instance of this inventory)")
        found.append({
            "instance_id": str(host["ec2_instance_id"]),
            "asg_name": str(host["asg_name"]) if host.get("asg_name") else None,
            "target_group_arns": [str(arn) for arn in host.get("target_group_arns") or []],
        })
    return found


class FilterModule:
    def filters(self):
        return {"service_targets": service_targets}

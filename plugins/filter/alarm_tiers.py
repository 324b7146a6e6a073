# Copyright: the ec2-fleet project
# Apache License 2.0
"""Filter `ec2fleet.fleet.alarm_tiers`: the web tiers whose deploy alarms playbooks/deploy-alarms.yml creates."""

from __future__ import annotations

DOCUMENTATION = r"""
name: alarm_tiers
short_description: Resolve web tiers (Auto Scaling group and target group) into what their CloudWatch alarms need
description:
  - A tier is one Auto Scaling group behind one target group. Takes the tiers given
    (C(asg_name), C(target_group) as a name or ARN, optional C(name)), or when none are given,
    derives them from hosts' variables (C(asg_name) and C(target_group_arns), as the
    C(ec2fleet.fleet.ec2_fleet) inventory sets them; hosts outside any group are left out), and
    resolves each target group with its description (as M(community.aws.elb_target_group_info)
    returns it) into the CloudWatch dimensions of its Application Load Balancer metrics.
  - A tier's name defaults to its group's name, or C(<group>-<target group name>) when the group is
    behind several target groups. The names of its alarms (C(alarms)) are O(prefix), the tier's
    name and the alarm's kind, except the application's errors (one alarm per environment,
    O(prefix) and C(app-errors)) and the group's CPU alarm and scaling policy (O(prefix), the
    group's name and C(cpu) or C(cpu-target)).
  - One-line errors for a tier without C(asg_name) or C(target_group), a target group not
    described, attached to no load balancer or to several, and two tiers of the same name.
positional: _input, target_groups
options:
  _input:
    description: The tiers asked for (an empty list - derive them from O(hosts)).
    type: list
    elements: dict
    required: true
  target_groups:
    description: Descriptions of the tiers' target groups (C(target_group_arn), C(target_group_name), C(load_balancer_arns)).
    type: list
    elements: dict
    required: true
  hosts:
    description: Hosts' variables to derive the tiers from when none are given.
    type: list
    elements: dict
    default: []
  prefix:
    description: The start of every alarm name, such as C(sampleapp-prod-).
    type: str
    default: ""
"""

EXAMPLES = r"""
tiers: >-
  {{ [{'asg_name': 'web', 'target_group': 'prod-web'}]
     | ec2fleet.fleet.alarm_tiers(target_groups_info.target_groups, prefix='sampleapp-prod-') }}
# -> [{name: web, asg_name: web, alarm_prefix: sampleapp-prod-web, target_group_arn: ..., load_balancer_arn: ...,
#      dimensions: {TargetGroup: targetgroup/prod-web/..., LoadBalancer: app/prod/...},
#      alarms: {target-5xx: sampleapp-prod-web-target-5xx, ..., app-errors: sampleapp-prod-app-errors,
#               cpu: sampleapp-prod-web-cpu, deploy-gate: sampleapp-prod-web-deploy-gate},
#      scaling_policy: sampleapp-prod-web-cpu-target}]
"""

RETURN = r"""
_value:
  description:
    - One dict per tier - C(name), C(asg_name), C(alarm_prefix) (O(prefix) and C(name)), C(target_group_arn),
      C(target_group_name), C(load_balancer_arn), C(dimensions) (C(TargetGroup) and C(LoadBalancer), as CloudWatch names them),
      C(alarms) (alarm name by kind - C(target-5xx), C(target-5xx-rate), C(unhealthy-hosts), C(p99), C(app-errors), C(cpu),
      C(deploy-gate)) and C(scaling_policy) (the group's policy name).
  type: list
  elements: dict
"""

from collections import Counter
from collections.abc import Mapping

from ansible.errors import AnsibleFilterError
from ansible_collections.ec2fleet.fleet.plugins.module_utils.deploy import DeployError, cloudwatch_dimension

TIER_ALARMS = ("target-5xx", "target-5xx-rate", "unhealthy-hosts", "p99", "deploy-gate")


def _wanted(tiers, hosts):
    if tiers:
        found = []
        for tier in tiers:
            if not isinstance(tier, Mapping) or not tier.get("asg_name") or not tier.get("target_group"):
                raise AnsibleFilterError(f"alarm_tiers: each tier needs asg_name and target_group, got {tier!r}")
            found.append({"name": tier.get("name"), "asg_name": str(tier["asg_name"]),
                          "target_group": str(tier["target_group"])})
        return found
    groups: dict[str, list[str]] = {}
    for host in hosts or []:
        if isinstance(host, Mapping) and host.get("asg_name"):
            arns = groups.setdefault(str(host["asg_name"]), [])
            arns += [str(arn) for arn in host.get("target_group_arns") or [] if str(arn) not in arns]
    return [{"name": None, "asg_name": asg, "target_group": arn} for asg in sorted(groups) for arn in groups[asg]]


def alarm_tiers(tiers, target_groups, hosts=None, prefix=""):
    wanted = _wanted(tiers, hosts)
    described = {}
    for group in target_groups or []:
        described[group["target_group_arn"]] = group
        described.setdefault(group["target_group_name"], group)
    per_group = Counter(tier["asg_name"] for tier in wanted)
    resolved = []
    for tier in wanted:
        group = described.get(tier["target_group"])
        if group is None:
            raise AnsibleFilterError(f"alarm_tiers: target group {tier['target_group']} of group {tier['asg_name']} "
                                     f"not found")
        balancers = group.get("load_balancer_arns") or []
        if len(balancers) != 1:
            raise AnsibleFilterError(f"alarm_tiers: target group {group['target_group_name']} is attached to "
                                     f"{len(balancers)} load balancers; its alarms need exactly one")
        name = tier["name"] or (tier["asg_name"] if per_group[tier["asg_name"]] == 1
                                else f"{tier['asg_name']}-{group['target_group_name']}")
        try:
            dimensions = {"TargetGroup": cloudwatch_dimension(group["target_group_arn"]),
                          "LoadBalancer": cloudwatch_dimension(balancers[0])}
        except DeployError as exc:
            raise AnsibleFilterError(f"alarm_tiers: {exc}") from exc
        alarms = {kind: f"{prefix}{name}-{kind}" for kind in TIER_ALARMS}
        alarms.update({"app-errors": f"{prefix}app-errors", "cpu": f"{prefix}{tier['asg_name']}-cpu"})
        resolved.append({"name": name, "asg_name": tier["asg_name"], "alarm_prefix": f"{prefix}{name}",
                         "target_group_arn": group["target_group_arn"],
                         "target_group_name": group["target_group_name"], "load_balancer_arn": balancers[0],
                         "dimensions": dimensions, "alarms": alarms,
                         "scaling_policy": f"{prefix}{tier['asg_name']}-cpu-target"})
    twice = sorted(name for name, count in Counter(t["name"] for t in resolved).items() if count > 1)
    if twice:
        raise AnsibleFilterError(f"alarm_tiers: more than one tier named {', '.join(twice)}; name them")
    return resolved


class FilterModule:
    def filters(self):
        return {"alarm_tiers": alarm_tiers}

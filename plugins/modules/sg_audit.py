#!/usr/bin/python
"""Ansible module: audit (and optionally enforce) SSH exposure of the bastion and private hosts."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: sg_audit
short_description: Audit and enforce the SSH security-group layout of a bastion and its private hosts
description:
  - Checks the bastion's security groups allow SSH only from O(admin_cidrs) and nothing but SSH,
    and that the security groups of private instances accept SSH only from the bastion's
    security groups (the AWS Linux bastion layout).
  - Reports every violation by security group and rule (RV(violations)); one rule with several
    sources is reported once per source.
  - With O(enforce=true) the offending permissions are revoked and missing ones authorized, then
    the groups are read again and RV(remaining) lists whatever is still wrong.
  - A permission that covers the SSH port as part of a wider range (for example all TCP from
    0.0.0.0/0 on a private host) is revoked whole, for that source.
  - Runs on the controller (delegate to C(localhost)); supports check mode (enforce reports what it
    would change).
version_added: "0.1.0"
author: ec2-fleet project (!UNKNOWN)
extends_documentation_fragment:
  - ec2fleet.fleet.aws
  - ec2fleet.fleet.aws.retries
options:
  bastion_group_ids:
    description: Security groups of the bastion. With O(bastion_instance_filters) the groups of the
      matching instances are added.
    type: list
    elements: str
    default: []
  bastion_instance_filters:
    description: EC2 DescribeInstances filters selecting the bastion instances (for example
      C({"tag:Role" = "bastion"})); empty means none.
    type: dict
    default: {}
  private_group_ids:
    description: Security groups of private instances.
    type: list
    elements: str
    default: []
  private_instance_filters:
    description: EC2 filters selecting private instances; their security groups are audited (the
      bastion's own groups excepted). Empty means none.
    type: dict
    default: {}
  admin_cidrs:
    description: IPv4/IPv6 CIDRs allowed to reach the bastion over SSH.
    type: list
    elements: str
    required: true
  ssh_port:
    description: TCP port of SSH.
    type: int
    default: 22
  enforce:
    description: Revoke offending permissions and add missing ones.
    type: bool
    default: false
"""

EXAMPLES = r"""
- name: Audit the bastion layout
  ec2fleet.fleet.sg_audit:
    bastion_instance_filters:
      "tag:Role": bastion
      instance-state-name: running
    private_instance_filters:
      instance-state-name: running
    admin_cidrs: [203.0.113.0/24]
  delegate_to: localhost
  register: audit

- name: Fix it
  ec2fleet.fleet.sg_audit:
    bastion_group_ids: [sg-0123456789abcdef0]
    private_group_ids: [sg-0fedcba9876543210]
    admin_cidrs: [203.0.113.0/24]
    enforce: true
  delegate_to: localhost
"""

RETURN = r"""
violations:
  description: What was wrong before any change, one entry per group, rule and source.
  returned: always
  type: list
  elements: dict
  contains:
    group_id: {description: Security group id., type: str}
    group_name: {description: Security group name., type: str}
    kind: {description: V(bastion) or V(private)., type: str}
    rule: {description: "The rule, like C(tcp 22-22 from 0.0.0.0/0)", type: str}
    problem: {description: Why it is a violation., type: str}
    action: {description: "V(revoke) or V(authorize): what enforce does about it.", type: str}
remaining:
  description: Violations left after enforcing (same form); equal to RV(violations) when not enforcing.
  returned: always
  type: list
  elements: dict
bastion_group_ids:
  description: Bastion security groups audited.
  returned: always
  type: list
  elements: str
private_group_ids:
  description: Private security groups audited.
  returned: always
  type: list
  elements: str
"""

import ipaddress

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.ec2fleet.fleet.plugins.module_utils.aws import (
    AWS_ARGUMENT_SPEC,
    HAS_BOTO3,
    AwsCalls,
    FleetAWSError,
)

ALL_PROTOCOLS = ("-1", "all")
TCP = ("tcp", "6")


# Audit failures and AWS failures reach the operator the same way: one line.
AuditError = FleetAWSError


class Ec2:
    """The EC2 look-ups the audit needs, through the collection's one AWS call wrapper."""

    def __init__(self, aws):
        self.aws = aws

    def call(self, operation, action, **kwargs):
        return self.aws.call("ec2", operation, action, **kwargs)

    def paginate(self, operation, key, action, **kwargs):
        return self.aws.paginate("ec2", operation, key, action, **kwargs)

    def instance_group_ids(self, filters):
        """Security groups of the instances matching EC2 filters (sorted, unique)."""
        if not filters:
            return []
        aws_filters = [
            {"Name": name, "Values": value if isinstance(value, list) else [str(value)]}
            for name, value in sorted(filters.items())
        ]
        reservations = self.paginate(
            "describe_instances", "Reservations", f"describe instances matching {filters}", Filters=aws_filters
        )
        return sorted(
            {
                group["GroupId"]
                for reservation in reservations
                for instance in reservation.get("Instances", [])
                for group in instance.get("SecurityGroups", [])
            }
        )

    def groups(self, group_ids):
        if not group_ids:
            return []
        return self.paginate(
            "describe_security_groups", "SecurityGroups", f"describe security groups {', '.join(group_ids)}",
            GroupIds=list(group_ids),
        )


def covers_port(permission, port):
    protocol = str(permission.get("IpProtocol"))
    if protocol in ALL_PROTOCOLS:
        return True
    if protocol not in TCP:
        return False
    return permission.get("FromPort", 0) <= port <= permission.get("ToPort", 65535)


def sources(permission):
    """Split one IpPermission into (label, single-source IpPermission) pairs."""
    base = {key: permission[key] for key in ("IpProtocol", "FromPort", "ToPort") if key in permission}
    for entry in permission.get("IpRanges", []):
        yield ("cidr", entry["CidrIp"]), dict(base, IpRanges=[{"CidrIp": entry["CidrIp"]}])
    for entry in permission.get("Ipv6Ranges", []):
        yield ("cidr", entry["CidrIpv6"]), dict(base, Ipv6Ranges=[{"CidrIpv6": entry["CidrIpv6"]}])
    for entry in permission.get("UserIdGroupPairs", []):
        pair = {key: entry[key] for key in ("GroupId", "UserId") if key in entry}
        yield ("group", entry["GroupId"]), dict(base, UserIdGroupPairs=[pair])
    for entry in permission.get("PrefixListIds", []):
        yield ("prefix-list", entry["PrefixListId"]), dict(base, PrefixListIds=[{"PrefixListId": entry["PrefixListId"]}])


def describe_rule(permission, source):
    protocol = str(permission.get("IpProtocol"))
    ports = "all traffic" if protocol in ALL_PROTOCOLS else f"{protocol} {permission.get('FromPort')}-{permission.get('ToPort')}"
    kind, value = source
    return f"{ports} from {value}" if kind == "cidr" else f"{ports} from {kind} {value}"


def ssh_permission(port, cidr=None, group_id=None):
    permission = {"IpProtocol": "tcp", "FromPort": port, "ToPort": port}
    if group_id:
        permission["UserIdGroupPairs"] = [{"GroupId": group_id}]
    elif ":" in cidr:
        permission["Ipv6Ranges"] = [{"CidrIpv6": cidr}]
    else:
        permission["IpRanges"] = [{"CidrIp": cidr}]
    return permission


def violation(group, kind, rule, problem, action, permission):
    return {
        "group_id": group["GroupId"],
        "group_name": group.get("GroupName", ""),
        "kind": kind,
        "rule": rule,
        "problem": problem,
        "action": action,
        "_permission": permission,
    }


def audit_bastion(group, admin_cidrs, port):
    """The bastion accepts SSH only from the admin CIDRs, and nothing else at all."""
    found = []
    present = set()
    for permission in group.get("IpPermissions", []):
        exact_ssh = str(permission.get("IpProtocol")) in TCP and permission.get("FromPort") == port == permission.get("ToPort")
        for source, single in sources(permission):
            rule = describe_rule(permission, source)
            if exact_ssh and source[0] == "cidr" and source[1] in admin_cidrs:
                present.add(source[1])
            elif not covers_port(permission, port):
                found.append(violation(group, "bastion", rule, "the bastion accepts nothing but SSH", "revoke", single))
            elif source[0] != "cidr":
                found.append(violation(group, "bastion", rule, "SSH to the bastion must come from an admin CIDR, not a "
                                       f"{source[0]}", "revoke", single))
            elif source[1] in admin_cidrs:
                found.append(violation(group, "bastion", rule, "wider than SSH for an admin CIDR", "revoke", single))
            else:
                found.append(violation(group, "bastion", rule, f"SSH open to {source[1]}, which is not an admin CIDR",
                                       "revoke", single))
    for cidr in admin_cidrs:
        if cidr not in present:
            permission = ssh_permission(port, cidr=cidr)
            found.append(violation(group, "bastion", describe_rule(permission, ("cidr", cidr)),
                                   "missing: SSH from this admin CIDR is not allowed", "authorize", permission))
    return found


def audit_private(group, bastion_group_ids, port):
    """A private host accepts SSH only from the bastion's security groups (other ports untouched)."""
    found = []
    present = set()
    for permission in group.get("IpPermissions", []):
        if not covers_port(permission, port):
            continue
        exact_ssh = str(permission.get("IpProtocol")) in TCP and permission.get("FromPort") == port == permission.get("ToPort")
        for source, single in sources(permission):
            rule = describe_rule(permission, source)
            if source[0] == "group" and source[1] in bastion_group_ids:
                if exact_ssh:
                    present.add(source[1])
                else:
                    found.append(violation(group, "private", rule, "wider than SSH for the bastion group", "revoke", single))
            else:
                found.append(violation(group, "private", rule,
                                       "SSH to a private host must come only from the bastion's security group",
                                       "revoke", single))
    if not present.intersection(bastion_group_ids):
        for group_id in bastion_group_ids:
            permission = ssh_permission(port, group_id=group_id)
            found.append(violation(group, "private", describe_rule(permission, ("group", group_id)),
                                   "missing: SSH from the bastion's security group is not allowed", "authorize", permission))
    return found


def audit(ec2, bastion_ids, private_ids, admin_cidrs, port):
    found = []
    for group in ec2.groups(bastion_ids):
        found.extend(audit_bastion(group, admin_cidrs, port))
    for group in ec2.groups(private_ids):
        found.extend(audit_private(group, bastion_ids, port))
    return found


def enforce(ec2, found):
    # Revocations first, so a rule being replaced never leaves a moment with both.
    for item in sorted(found, key=lambda v: v["action"] != "revoke"):
        operation = "revoke_security_group_ingress" if item["action"] == "revoke" else "authorize_security_group_ingress"
        ec2.call(operation, f"{item['action']} '{item['rule']}' on {item['group_id']}",
                 GroupId=item["group_id"], IpPermissions=[item["_permission"]])


def public(found):
    return [{key: value for key, value in item.items() if not key.startswith("_")} for item in found]


def normalise_cidrs(cidrs):
    normalised = []
    for cidr in cidrs:
        try:
            normalised.append(str(ipaddress.ip_network(cidr, strict=False)))
        except ValueError as exc:
            raise AuditError(f"admin_cidrs: {cidr!r} is not a CIDR ({exc})") from exc
    return normalised


def main():
    module = AnsibleModule(
        argument_spec={
            "bastion_group_ids": {"type": "list", "elements": "str", "default": []},
            "bastion_instance_filters": {"type": "dict", "default": {}},
            "private_group_ids": {"type": "list", "elements": "str", "default": []},
            "private_instance_filters": {"type": "dict", "default": {}},
            "admin_cidrs": {"type": "list", "elements": "str", "required": True},
            "ssh_port": {"type": "int", "default": 22},
            "enforce": {"type": "bool", "default": False},
            **AWS_ARGUMENT_SPEC,
        },
        supports_check_mode=True,
    )
    if not HAS_BOTO3:
        module.fail_json(msg="ec2fleet.fleet.sg_audit needs boto3 on the controller")
    params = module.params
    try:
        admin_cidrs = normalise_cidrs(params["admin_cidrs"])
        ec2 = Ec2(AwsCalls(params))
        bastion_ids = sorted(set(params["bastion_group_ids"]) | set(ec2.instance_group_ids(params["bastion_instance_filters"])))
        if not bastion_ids:
            raise AuditError("no bastion security group: give bastion_group_ids or bastion_instance_filters that match")
        private_ids = sorted(
            (set(params["private_group_ids"]) | set(ec2.instance_group_ids(params["private_instance_filters"])))
            - set(bastion_ids)
        )
        found = audit(ec2, bastion_ids, private_ids, admin_cidrs, params["ssh_port"])
        remaining = found
        changed = False
        if params["enforce"] and found:
            changed = True
            if not module.check_mode:
                enforce(ec2, found)
                remaining = audit(ec2, bastion_ids, private_ids, admin_cidrs, params["ssh_port"])
    except AuditError as exc:
        module.fail_json(msg=str(exc))
    module.exit_json(
        changed=changed,
        violations=public(found),
        remaining=public(remaining),
        bastion_group_ids=bastion_ids,
        private_group_ids=private_ids,
    )


if __name__ == "__main__":
    main()

"""Shared code of the deploy modules (deploy_lock, asg_processes, asg_standby, target_wait,
lb_metrics): one-line errors and the Auto Scaling / target group look-ups and waits they all need.

Every AWS call goes through ``aws.AwsCalls`` (the collection's one call wrapper); nothing here
builds a client itself.
"""

from __future__ import annotations

from ansible_collections.ec2fleet.fleet.plugins.module_utils.aws import (
    AWS_ARGUMENT_SPEC,
    FLEET_AWS_ERRORS,
    FleetAWSError,
    error_code,
    format_aws_error,
)

# Target health states (elbv2 DescribeTargetHealth).
HEALTHY = "healthy"
DRAINING_STATES = frozenset({"draining", "unhealthy.draining"})
NOT_REGISTERED = "absent"  # our name for "no entry for this instance in the target group"

# Auto Scaling lifecycle states an instance passes through on its way in and out of Standby.
ENTERING_STANDBY = frozenset({"EnteringStandby"})
STANDBY = "Standby"
IN_SERVICE = "InService"
LEAVING_STANDBY = frozenset({"Pending", "Pending:Wait", "Pending:Proceed"})


# Deploy failures and AWS failures reach the operator the same way: one line, no traceback.
DeployError = FleetAWSError


def argument_spec(**module_options):
    """The module's own options plus the common AWS ones."""
    spec = dict(AWS_ARGUMENT_SPEC)
    spec.update(module_options)
    return spec


def run_module(run, spec, **module_kwargs):
    """The main() of a deploy module: parse the arguments (check mode supported), return what
    ``run(module)`` returns, or fail with a DeployError's one line."""
    from ansible.module_utils.basic import AnsibleModule

    module = AnsibleModule(argument_spec=spec, supports_check_mode=True, **module_kwargs)
    try:
        module.exit_json(**run(module))
    except DeployError as exc:
        module.fail_json(msg=str(exc))


# --- Auto Scaling -----------------------------------------------------------------------------

def describe_asg(aws, name):
    """The Auto Scaling group dict; DeployError when it does not exist."""
    groups = aws.call(
        "autoscaling", "describe_auto_scaling_groups", f"describe Auto Scaling group {name}",
        AutoScalingGroupNames=[name],
    )["AutoScalingGroups"]
    if not groups:
        raise DeployError(f"Auto Scaling group {name!r} not found ({aws.where})")
    return groups[0]


def asg_instance(aws, instance_id):
    """The instance's Auto Scaling record (group name, lifecycle state, health), or None."""
    found = aws.call(
        "autoscaling", "describe_auto_scaling_instances", f"describe Auto Scaling instance {instance_id}",
        InstanceIds=[instance_id],
    )["AutoScalingInstances"]
    return found[0] if found else None


def require_ec2_instance(aws, instance_id):
    """DeployError unless the EC2 instance exists (one clear line instead of a raw API error)."""
    try:
        reservations = aws.client("ec2").describe_instances(InstanceIds=[instance_id])["Reservations"]
    except FLEET_AWS_ERRORS as exc:
        if error_code(exc) in ("InvalidInstanceID.NotFound", "InvalidInstanceID.Malformed"):
            raise DeployError(f"EC2 instance {instance_id} not found ({aws.where})") from exc
        raise DeployError(format_aws_error(exc, action=f"describe instance {instance_id}", where=aws.where)) from exc
    instances = [i for r in reservations for i in r.get("Instances", [])]
    if not instances:
        raise DeployError(f"EC2 instance {instance_id} not found ({aws.where})")
    return instances[0]


# --- Target groups ----------------------------------------------------------------------------

# Where an Application Load Balancer publishes its metrics (read by lb_metrics; the local fleet's
# stand-in publishes there too).
ALB_METRICS_NAMESPACE = "AWS/ApplicationELB"


def cloudwatch_dimension(arn):
    """CloudWatch's dimension value for a load balancer or target group ARN:
    'app/<name>/<id>' (LoadBalancer) or 'targetgroup/<name>/<id>' (TargetGroup)."""
    for marker, prefix in ((":loadbalancer/", ""), (":targetgroup/", "targetgroup/")):
        _head, found, tail = arn.partition(marker)
        if found and tail:
            return prefix + tail
    raise DeployError(f"not a load balancer or target group ARN: {arn}")


def resolve_target_groups(aws, names_or_arns):
    """ARNs for a list of target group names or ARNs, in the given order."""
    arns, names = [], []
    for item in names_or_arns:
        (arns if item.startswith("arn:") else names).append(item)
    resolved = {}
    if names:
        try:
            groups = aws.client("elbv2").describe_target_groups(Names=names)["TargetGroups"]
        except FLEET_AWS_ERRORS as exc:
            if error_code(exc) == "TargetGroupNotFound":
                raise DeployError(f"target group(s) {', '.join(names)}: not found ({aws.where})") from exc
            raise DeployError(format_aws_error(exc, action="describe target groups", where=aws.where)) from exc
        resolved = {g["TargetGroupName"]: g["TargetGroupArn"] for g in groups}
    return [item if item.startswith("arn:") else resolved[item] for item in names_or_arns]


def tg_name(arn):
    """``arn:...:targetgroup/web/abc`` -> ``web`` (for messages)."""
    parts = arn.split(":targetgroup/", 1)
    return parts[1].split("/", 1)[0] if len(parts) == 2 else arn


def deregistration_delay(aws, arn):
    """The target group's deregistration delay (draining time) in seconds."""
    attributes = aws.call(
        "elbv2", "describe_target_group_attributes", f"describe target group {tg_name(arn)}",
        TargetGroupArn=arn,
    )["Attributes"]
    for attribute in attributes:
        if attribute["Key"] == "deregistration_delay.timeout_seconds":
            return int(attribute["Value"])
    return 300  # the AWS default


def targets_by_instance(aws, arn):
    """Every registered target of the group by instance: {instance_id: [{port, state, reason,
    description}]}, from one DescribeTargetHealth call (draining entries included; instances not
    registered at all are absent)."""
    try:
        described = aws.client("elbv2").describe_target_health(TargetGroupArn=arn)["TargetHealthDescriptions"]
    except FLEET_AWS_ERRORS as exc:
        if error_code(exc) == "TargetGroupNotFound":
            raise DeployError(f"target group {arn} not found ({aws.where})") from exc
        raise DeployError(
            format_aws_error(exc, action=f"describe target health in {tg_name(arn)}", where=aws.where)
        ) from exc
    found = {}
    for item in described:
        health = item.get("TargetHealth", {})
        if health.get("Reason") == "Target.NotRegistered":
            continue
        found.setdefault(item["Target"]["Id"], []).append({
            "port": item["Target"].get("Port"),
            "state": health.get("State"),
            "reason": health.get("Reason", ""),
            "description": health.get("Description", ""),
        })
    return {iid: sorted(entries, key=lambda e: e["port"] or 0) for iid, entries in found.items()}


def target_states(aws, arn, instance_id):
    """This instance's entries in the target group: [{port, state, reason, description}].

    The whole group is listed (not just this target) so every port the instance is registered on
    is seen, draining ones included; an empty list means "not registered at all".
    """
    return targets_by_instance(aws, arn).get(instance_id, [])


def summarize(entries):
    """One state word for an instance in one target group (the worst of its ports)."""
    if not entries:
        return NOT_REGISTERED
    states = {e["state"] for e in entries}
    if states == {HEALTHY}:
        return HEALTHY
    for state in ("unhealthy", "unhealthy.draining", "draining", "initial", "unavailable", "unused"):
        if state in states:
            return state
    return sorted(states)[0]


def state_line(arn, entries):
    """``web: unhealthy (Target.FailedHealthChecks: Health checks failed)`` for failure messages."""
    if not entries:
        return f"{tg_name(arn)}: not registered"
    parts = []
    for e in entries:
        why = ": ".join(x for x in (e["reason"], e["description"]) if x)
        parts.append(f"port {e['port']} {e['state']}" + (f" ({why})" if why else ""))
    return f"{tg_name(arn)}: " + ", ".join(parts)

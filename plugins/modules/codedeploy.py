#!/usr/bin/python
"""Ansible module: a CodeDeploy application and (optionally) one of its deployment groups."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: codedeploy
short_description: Ensure an AWS CodeDeploy application and deployment group exist as described
description:
  - Creates the CodeDeploy application (EC2/On-premises compute platform by default) when it is
    missing, and, when O(deployment_group_name) is given, creates or updates that deployment
    group (service role, deployment configuration, Auto Scaling groups, EC2 tag filters, target
    groups, deployment style, automatic rollback, outdated instances strategy).
  - With O(state=absent) deletes the deployment group, or the whole application when no
    deployment group is named.
  - amazon.aws and community.aws have no CodeDeploy module; AWS access goes through the
    collection's one client layer (region, profile, assumed role, endpoint override, retries).
version_added: "0.1.0"
author: ec2-fleet project (!UNKNOWN)
options:
  application_name:
    description: Name of the CodeDeploy application.
    type: str
    required: true
  compute_platform:
    description: Compute platform of a new application (fixed once created).
    type: str
    choices: [Server, Lambda, ECS]
    default: Server
  deployment_group_name:
    description: Deployment group to manage in the application.
    type: str
  service_role_arn:
    description: IAM role CodeDeploy assumes for the deployment group. Required to create one.
    type: str
  deployment_config_name:
    description: Deployment configuration of the group.
    type: str
    default: CodeDeployDefault.OneAtATime
  auto_scaling_groups:
    description: Auto Scaling groups whose instances the group deploys to.
    type: list
    elements: str
    default: []
  ec2_tag_filters:
    description: EC2 tag filters selecting instances (C(key), C(value), C(type) KEY_ONLY, VALUE_ONLY or KEY_AND_VALUE).
    type: list
    elements: dict
    default: []
  target_group_names:
    description: ELB target groups the group takes instances out of and back into during a deployment.
    type: list
    elements: str
    default: []
  with_traffic_control:
    description: Route traffic through the target groups (deployment option WITH_TRAFFIC_CONTROL).
    type: bool
    default: false
  auto_rollback_events:
    description: Events that roll a deployment back automatically; empty disables automatic rollback.
    type: list
    elements: str
    choices: [DEPLOYMENT_FAILURE, DEPLOYMENT_STOP_ON_ALARM, DEPLOYMENT_STOP_ON_REQUEST]
    default: [DEPLOYMENT_FAILURE]
  outdated_instances_strategy:
    description: What CodeDeploy does with instances launched during a deployment.
    type: str
    choices: [UPDATE, IGNORE]
    default: UPDATE
  tags:
    description: Tags set on a new application or deployment group.
    type: dict
    default: {}
  state:
    description: Whether the application / deployment group should exist.
    type: str
    choices: [present, absent]
    default: present
extends_documentation_fragment:
  - ec2fleet.fleet.aws
  - ec2fleet.fleet.aws.retries
requirements:
  - boto3
"""

EXAMPLES = r"""
- name: Register the sample application and its web deployment group
  ec2fleet.fleet.codedeploy:
    application_name: sampleapp
    deployment_group_name: web
    service_role_arn: arn:aws:iam::123456789012:role/codedeploy-service
    auto_scaling_groups: [web]
    target_group_names: [web]
    with_traffic_control: true
    region: eu-west-1
"""

RETURN = r"""
application:
  description: The application as GetApplication returns it (absent after deletion).
  returned: state=present
  type: dict
deployment_group:
  description: The deployment group as GetDeploymentGroup returns it.
  returned: state=present and deployment_group_name given
  type: dict
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.ec2fleet.fleet.plugins.module_utils.aws import (
    AWS_ARGUMENT_SPEC,
    HAS_BOTO3,
    AwsCalls,
    FleetAWSError,
)


def _asg_names(groups):
    # GetDeploymentGroup returns {"name": ..., "hook": ...} objects.
    return sorted(str(g.get("name")) for g in groups or [])


def _tag_filters(filters):
    return sorted((f.get("Key", f.get("key")), f.get("Value", f.get("value")), f.get("Type", f.get("type")))
                  for f in filters or [])


def desired_group(params):
    """The CreateDeploymentGroup / UpdateDeploymentGroup arguments the task asks for."""
    events = params["auto_rollback_events"]
    return {
        "deploymentConfigName": params["deployment_config_name"],
        "serviceRoleArn": params["service_role_arn"],
        "autoScalingGroups": params["auto_scaling_groups"],
        "ec2TagFilters": [
            {"Key": f["key"], "Value": f.get("value", ""), "Type": f.get("type", "KEY_AND_VALUE")}
            for f in params["ec2_tag_filters"]
        ],
        "loadBalancerInfo": {"targetGroupInfoList": [{"name": n} for n in params["target_group_names"]]},
        "deploymentStyle": {
            "deploymentType": "IN_PLACE",
            "deploymentOption": "WITH_TRAFFIC_CONTROL" if params["with_traffic_control"] else "WITHOUT_TRAFFIC_CONTROL",
        },
        "autoRollbackConfiguration": {"enabled": bool(events), "events": events},
        "outdatedInstancesStrategy": params["outdated_instances_strategy"],
    }


def differences(current, desired):
    """Names of the settings whose current value differs from the desired one."""
    found = []
    if current.get("deploymentConfigName") != desired["deploymentConfigName"]:
        found.append("deploymentConfigName")
    if current.get("serviceRoleArn") != desired["serviceRoleArn"]:
        found.append("serviceRoleArn")
    if _asg_names(current.get("autoScalingGroups")) != sorted(desired["autoScalingGroups"]):
        found.append("autoScalingGroups")
    if _tag_filters(current.get("ec2TagFilters")) != _tag_filters(desired["ec2TagFilters"]):
        found.append("ec2TagFilters")
    current_tgs = sorted(t["name"] for t in (current.get("loadBalancerInfo") or {}).get("targetGroupInfoList", []))
    if current_tgs != sorted(t["name"] for t in desired["loadBalancerInfo"]["targetGroupInfoList"]):
        found.append("loadBalancerInfo")
    style = current.get("deploymentStyle") or {}
    current_style = (style.get("deploymentType", "IN_PLACE"), style.get("deploymentOption", "WITHOUT_TRAFFIC_CONTROL"))
    if current_style != (desired["deploymentStyle"]["deploymentType"], desired["deploymentStyle"]["deploymentOption"]):
        found.append("deploymentStyle")
    rollback = current.get("autoRollbackConfiguration") or {}
    wanted_rollback = desired["autoRollbackConfiguration"]
    if (bool(rollback.get("enabled")), sorted(rollback.get("events") or [])) != (wanted_rollback["enabled"], sorted(wanted_rollback["events"])):
        found.append("autoRollbackConfiguration")
    if (current.get("outdatedInstancesStrategy") or "UPDATE") != desired["outdatedInstancesStrategy"]:
        found.append("outdatedInstancesStrategy")
    return found


class CodeDeploy:
    """The CodeDeploy look-ups and changes, through the collection's one AWS call wrapper."""

    def __init__(self, module, aws):
        self.module = module
        self.aws = aws

    def call(self, action, method, **kwargs):
        return self.aws.call("codedeploy", method, action, **kwargs)

    def get(self, action, method, missing_code, **kwargs):
        return self.aws.find("codedeploy", method, action, (missing_code,), **kwargs)

    def application(self, name):
        found = self.get(f"get application {name}", "get_application", "ApplicationDoesNotExistException",
                         applicationName=name)
        return found["application"] if found else None

    def group(self, app, name):
        found = self.get(f"get deployment group {app}/{name}", "get_deployment_group",
                         "DeploymentGroupDoesNotExistException", applicationName=app, deploymentGroupName=name)
        return found["deploymentGroupInfo"] if found else None


def _tags(tags):
    return [{"Key": k, "Value": str(v)} for k, v in sorted(tags.items())]


def ensure_present(cd, params, check):
    changed, diff = False, []
    app_name, group_name = params["application_name"], params["deployment_group_name"]
    app = cd.application(app_name)
    if app is None:
        changed = True
        diff.append(f"create application {app_name}")
        if not check:
            cd.call(f"create application {app_name}", "create_application", applicationName=app_name,
                    computePlatform=params["compute_platform"], tags=_tags(params["tags"]))
            app = cd.application(app_name)
    elif app.get("computePlatform") != params["compute_platform"]:
        cd.module.fail_json(msg=f"application {app_name} exists with compute platform {app.get('computePlatform')}, "
                                f"not {params['compute_platform']} (it cannot be changed; delete it first)")
    result = {"application": app or {"applicationName": app_name}}
    if not group_name:
        return changed, diff, result
    desired = desired_group(params)
    current = cd.group(app_name, group_name) if app and app.get("applicationId") else None
    if current is None:
        if not params["service_role_arn"]:
            cd.module.fail_json(msg=f"service_role_arn is required to create deployment group {group_name}")
        changed = True
        diff.append(f"create deployment group {app_name}/{group_name}")
        if not check:
            cd.call(f"create deployment group {app_name}/{group_name}", "create_deployment_group",
                    applicationName=app_name, deploymentGroupName=group_name, tags=_tags(params["tags"]), **desired)
    else:
        if not params["service_role_arn"]:
            desired["serviceRoleArn"] = current.get("serviceRoleArn")
        changes = differences(current, desired)
        if changes:
            changed = True
            diff.append(f"update deployment group {app_name}/{group_name}: {', '.join(changes)}")
            if not check:
                cd.call(f"update deployment group {app_name}/{group_name}", "update_deployment_group",
                        applicationName=app_name, currentDeploymentGroupName=group_name, **desired)
    if not check:
        current = cd.group(app_name, group_name)
    result["deployment_group"] = current or {"deploymentGroupName": group_name, **desired}
    return changed, diff, result


def ensure_absent(cd, params, check):
    app_name, group_name = params["application_name"], params["deployment_group_name"]
    if cd.application(app_name) is None:
        return False, [], {}
    if group_name:
        if cd.group(app_name, group_name) is None:
            return False, [], {}
        if not check:
            cd.call(f"delete deployment group {app_name}/{group_name}", "delete_deployment_group",
                    applicationName=app_name, deploymentGroupName=group_name)
        return True, [f"delete deployment group {app_name}/{group_name}"], {}
    if not check:
        cd.call(f"delete application {app_name}", "delete_application", applicationName=app_name)
    return True, [f"delete application {app_name}"], {}


def main():
    module = AnsibleModule(
        argument_spec={
            "application_name": {"type": "str", "required": True},
            "compute_platform": {"type": "str", "default": "Server", "choices": ["Server", "Lambda", "ECS"]},
            "deployment_group_name": {"type": "str"},
            "service_role_arn": {"type": "str"},
            "deployment_config_name": {"type": "str", "default": "CodeDeployDefault.OneAtATime"},
            "auto_scaling_groups": {"type": "list", "elements": "str", "default": []},
            "ec2_tag_filters": {"type": "list", "elements": "dict", "default": []},
            "target_group_names": {"type": "list", "elements": "str", "default": []},
            "with_traffic_control": {"type": "bool", "default": False},
            "auto_rollback_events": {
                "type": "list", "elements": "str", "default": ["DEPLOYMENT_FAILURE"],
                "choices": ["DEPLOYMENT_FAILURE", "DEPLOYMENT_STOP_ON_ALARM", "DEPLOYMENT_STOP_ON_REQUEST"],
            },
            "outdated_instances_strategy": {"type": "str", "default": "UPDATE", "choices": ["UPDATE", "IGNORE"]},
            "tags": {"type": "dict", "default": {}},
            "state": {"type": "str", "default": "present", "choices": ["present", "absent"]},
            **AWS_ARGUMENT_SPEC,
        },
        supports_check_mode=True,
    )
    if not HAS_BOTO3:
        module.fail_json(msg="boto3 and botocore are required for ec2fleet.fleet.codedeploy")
    params = module.params
    if params["with_traffic_control"] and not params["target_group_names"]:
        module.fail_json(msg="with_traffic_control needs target_group_names")
    try:
        cd = CodeDeploy(module, AwsCalls(params))
        if params["state"] == "present":
            changed, diff, result = ensure_present(cd, params, module.check_mode)
        else:
            changed, diff, result = ensure_absent(cd, params, module.check_mode)
    except FleetAWSError as exc:
        module.fail_json(msg=str(exc))
    module.exit_json(changed=changed, actions=diff, **result)


if __name__ == "__main__":
    main()

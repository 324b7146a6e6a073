#!/usr/bin/python
"""Ansible module: the release record of an application in an environment (SSM Parameter Store):
what new instances install, and which release was the last good one."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: release_record
short_description: Record the release new instances install, and find the last good release
description:
  - Keeps the release of an application in an environment in an SSM Parameter Store C(String)
    parameter (default C(/<app>/<env>/release)); new instances install it when they bootstrap
    (C(playbooks/site.yml)). Each write says why in the parameter's description, which SSM keeps
    in the parameter history, so the history tells deployed releases from the others.
  - O(state=deployed) records a release a deploy finished; O(state=candidate) records one whose
    canary passed, during the rollout (new instances take it); O(state=restored) puts back the
    release recorded before a rollout that stopped. O(state=absent) deletes the parameter and its
    history, when the first rollout of an environment stopped and there is nothing to put back
    (new instances then install the playbook's default release).
  - O(state=read) changes nothing and returns the recorded release, the last good release
    (RV(last_good)) and the release a rollback should go to (RV(rollback_target)). When the latest
    write is a finished deploy, the rollback target is the deployed release before it (undo
    that deploy); when it is a candidate or a put-back (a rollout stopped, the fleet may be mixed),
    it is the last deployed release, never the candidate that failed.
  - SSM keeps the last 100 versions of a parameter, so the history the module reads is that long at most.
  - Supports check mode.
version_added: "1.0.0"
author: ec2-fleet project (!UNKNOWN)
extends_documentation_fragment:
  - ec2fleet.fleet.aws
  - ec2fleet.fleet.aws.retries
options:
  name:
    description: The SSM parameter. Default C(/<app>/<env>/release) from O(app) and O(env).
    type: str
  app:
    description: Application name, for the default O(name).
    type: str
  env:
    description: Environment name, for the default O(name).
    type: str
  state:
    description: V(read), V(deployed), V(candidate), V(restored) or V(absent).
    type: str
    choices: [read, deployed, candidate, restored, absent]
    default: read
  version:
    description: The release to record (all states but V(read) and V(absent)).
    type: str
  run_id:
    description: The deploy run writing it, kept in the history.
    type: str
    default: ""
notes:
  - Needs C(ssm:GetParameter), C(ssm:GetParameterHistory) and C(ssm:PutParameter) on the parameter
    (C(ssm:DeleteParameter) for V(absent)).
"""

EXAMPLES = r"""
- name: Record the release the deploy finished
  ec2fleet.fleet.release_record:
    app: sampleapp
    env: prod
    state: deployed
    version: "{{ app_version }}"
    run_id: "{{ deploy_lock.run_id }}"
  delegate_to: localhost

- name: Find the release to roll back to
  ec2fleet.fleet.release_record:
    app: sampleapp
    env: prod
  delegate_to: localhost
  register: release
# release.rollback_target
"""

RETURN = r"""
name:
  description: The SSM parameter.
  returned: always
  type: str
version:
  description: The release recorded now (after this call; in check mode, what it would be). Empty when none.
  returned: always
  type: str
previous:
  description: The release recorded before this call (empty when none).
  returned: always
  type: str
last_good:
  description: The release the last finished deploy recorded (empty when none is known).
  returned: always
  type: str
rollback_target:
  description: The release a rollback should go to (empty when none is known).
  returned: always
  type: str
history:
  description: The recorded writes, oldest first, each C(version), C(kind) (deployed, candidate, restored, other) and C(when).
  returned: always
  type: list
  elements: dict
"""

from ansible_collections.ec2fleet.fleet.plugins.module_utils.aws import FLEET_AWS_ERRORS, AwsCalls, error_code
from ansible_collections.ec2fleet.fleet.plugins.module_utils.deploy import DeployError, argument_spec, run_module

KINDS = ("deployed", "candidate", "restored")
DESCRIPTION = {
    "deployed": "deployed: {app} {version} in {env}, run {run_id} (playbooks/deploy.yml)",
    "candidate": "candidate: {app} {version} in {env} passed its canary, run {run_id} (playbooks/deploy.yml)",
    "restored": "restored: {app} {version} in {env}, put back when run {run_id} stopped (playbooks/deploy.yml)",
}


def kind_of(description):
    head = (description or "").split(":", 1)[0].strip()
    return head if head in KINDS else "other"


def targets(history):
    """(last_good, rollback_target) from the history, oldest first. Writes made before this
    module (no kind) count as deployed: that is what the deploy used to record."""
    deployed = [h["version"] for h in history if h["kind"] in ("deployed", "other")]
    last_good = deployed[-1] if deployed else ""
    if not history:
        return "", ""
    if history[-1]["kind"] in ("deployed", "other"):
        earlier = [v for v in deployed if v != history[-1]["version"]]
        return last_good, earlier[-1] if earlier else ""
    return last_good, last_good


def read_history(aws, name):
    entries = []
    try:
        for page in aws.client("ssm").get_paginator("get_parameter_history").paginate(Name=name):
            for item in page["Parameters"]:
                entries.append({"version": item["Value"], "kind": kind_of(item.get("Description")),
                                "when": item["LastModifiedDate"].isoformat() if item.get("LastModifiedDate") else "",
                                "n": item.get("Version", 0)})
    except FLEET_AWS_ERRORS as exc:
        if error_code(exc) == "ParameterNotFound":
            return []
        raise DeployError(f"cannot read the history of {name}: {exc}") from exc
    return [{k: v for k, v in e.items() if k != "n"} for e in sorted(entries, key=lambda e: e["n"])]


def run(module):
    params = module.params
    name = params["name"] or f"/{params['app']}/{params['env']}/release"
    aws = AwsCalls(params)
    history = read_history(aws, name)
    previous = history[-1]["version"] if history else ""
    result = dict(changed=False, name=name, version=previous, previous=previous)
    state = params["state"]
    if state == "absent":
        result.update(changed=bool(history), version="")
        if history and not module.check_mode:
            aws.call("ssm", "delete_parameter", f"delete the release record {name}", Name=name)
        history = []
    elif state != "read":
        version = params["version"]
        description = DESCRIPTION[state].format(app=params["app"] or name, env=params["env"] or "", version=version,
                                                run_id=params["run_id"] or "?")
        result.update(changed=version != previous or not history or history[-1]["kind"] != state, version=version)
        if result["changed"] and not module.check_mode:
            aws.call("ssm", "put_parameter", f"record release {version} in {name}", Name=name, Value=version,
                     Type="String", Overwrite=True, Description=description[:1024])
            history = read_history(aws, name)
        elif result["changed"]:
            history = [*history, {"version": version, "kind": state, "when": ""}]
    last_good, rollback_target = targets(history)
    result.update(last_good=last_good, rollback_target=rollback_target, history=history[-20:])
    return result


ARGUMENT_SPEC = argument_spec(
    name={"type": "str"},
    app={"type": "str"},
    env={"type": "str"},
    state={"type": "str", "choices": ["read", *KINDS, "absent"], "default": "read"},
    version={"type": "str"},
    run_id={"type": "str", "default": ""},
)


def main():
    run_module(run, ARGUMENT_SPEC, required_one_of=[("name", "app")], required_together=[("app", "env")],
               required_if=[("state", s, ("version",)) for s in KINDS])


if __name__ == "__main__":
    main()

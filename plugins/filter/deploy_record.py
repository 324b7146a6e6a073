# Copyright: the ec2-fleet project
# Apache License 2.0
"""Filter `ec2fleet.fleet.deploy_record`: what the deploy lock records of the hosts out of service."""

from __future__ import annotations

DOCUMENTATION = r"""
name: deploy_record
short_description: The instances a rolling deploy's lock must hold as out of service, and every host's final result
description:
  - With O(what=standby) (before a batch leaves service), returns the instance ids the deploy lock
    must record as out of service - the batch's (O(batch_instance_ids)), those earlier batches left
    out of service, and those an interrupted run left in Standby (O(recovered)) that this run has
    not yet put back. The record is merged, never replaced.
  - With O(what=results) (at the end), returns every accounted host's final result, as its
    batch's accounting recorded it; and with O(what=left_out) the instance ids of those results
    still out of service.
positional: _input
options:
  _input:
    description: The batches' outcomes so far (from P(ec2fleet.fleet.batch_outcome#filter)).
    type: list
    elements: dict
    required: true
  what:
    description: V(standby), V(results) or V(left_out).
    type: str
    required: true
  recovered:
    description: Instance ids an interrupted run left in Standby (for V(standby)).
    type: list
    elements: str
    default: []
  batch_instance_ids:
    description: The starting batch's instance ids (for V(standby)).
    type: list
    elements: str
    default: []
"""

EXAMPLES = r"""
standby: "{{ deploy_outcomes | ec2fleet.fleet.deploy_record(what='standby', recovered=[], batch_instance_ids=['i-1']) }}"
"""

RETURN = r"""
_value:
  description: Instance ids (V(standby), V(left_out)) or result dicts (V(results)).
  type: list
"""

from ansible.errors import AnsibleFilterError
from ansible_collections.ec2fleet.fleet.plugins.module_utils import deploy_rollout


def deploy_record(outcomes, what, recovered=(), batch_instance_ids=()):
    outcomes = list(outcomes or [])
    if what == "standby":
        return deploy_rollout.standby_record(list(recovered or []), outcomes, list(batch_instance_ids or []))
    results = deploy_rollout.final_results(outcomes)
    if what == "results":
        return results
    if what == "left_out":
        return deploy_rollout.left_out_of_service(results)
    raise AnsibleFilterError(f"deploy_record: what must be standby, results or left_out, got {what!r}")


class FilterModule:
    def filters(self):
        return {"deploy_record": deploy_record}

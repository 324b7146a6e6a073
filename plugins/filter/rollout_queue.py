# Copyright: the ec2-fleet project
# Apache License 2.0
"""Filter `ec2fleet.fleet.rollout_queue`: the planned batches as the rollout play runs them."""

from __future__ import annotations

DOCUMENTATION = r"""
name: rollout_queue
short_description: Queue planned deploy batches for the rollout play, each led by its coordinator
description:
  - Takes the batches planned by P(ec2fleet.fleet.deploy_batches#filter) (lists of host names) and
    returns C(queue), one dict per host in the order the rollout play must run them (C(name),
    1-based C(batch), C(coordinator)), and C(serial), the batch sizes for the play's C(serial).
  - Each batch is led by a coordinator, an extra inventory host (C(deploy-batch-<n>)) on the
    controller's local connection that runs the batch's controller tasks. Being in every batch,
    it keeps Ansible from ending the whole playbook when every real host of a batch becomes
    unreachable, so the deploy's cleanup always runs.
options:
  _input:
    description: The batches, non-empty lists of host names.
    type: list
    elements: list
    required: true
  first:
    description: The number of the first batch (a sweep after the rollout continues its numbering).
    type: int
    default: 1
"""

EXAMPLES = r"""
rollout: "{{ [['web-1'], ['web-2', 'web-3']] | ec2fleet.fleet.rollout_queue }}"
# -> queue: [{name: deploy-batch-1, batch: 1, coordinator: true}, {name: web-1, batch: 1, coordinator: false},
#            {name: deploy-batch-2, batch: 2, coordinator: true}, {name: web-2, ...}, {name: web-3, ...}]
#    serial: [2, 3]
"""

RETURN = r"""
_value:
  description: C(queue) (dicts C(name), C(batch), C(coordinator)) and C(serial) (batch sizes).
  type: dict
"""

from ansible.errors import AnsibleFilterError
from ansible_collections.ec2fleet.fleet.plugins.module_utils.deploy_rollout import rollout_queue as _rollout_queue


def rollout_queue(batches, first=1):
    try:
        return _rollout_queue(batches, int(first))
    except ValueError as exc:
        raise AnsibleFilterError(f"rollout_queue: {exc}") from exc


class FilterModule:
    def filters(self):
        return {"rollout_queue": rollout_queue}

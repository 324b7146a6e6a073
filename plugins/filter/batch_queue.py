"""Filter `ec2fleet.fleet.batch_queue`: flatten planned batches into the order hosts are queued in.

    {{ [['web-1'], ['web-2', 'web-3']] | ec2fleet.fleet.batch_queue }}
    -> [{'name': 'web-1', 'batch': 1}, {'name': 'web-2', 'batch': 2}, {'name': 'web-3', 'batch': 2}]
"""

from __future__ import annotations

from ansible.errors import AnsibleFilterError

DOCUMENTATION = r"""
name: batch_queue
short_description: Flatten planned deploy batches into the order hosts are queued in
description:
  - Takes the batches planned by P(ec2fleet.fleet.deploy_batches#filter) (lists of host names) and
    returns one dict per host, C(name) and its 1-based C(batch) number, in queue order.
options:
  _input:
    description: The batches, lists of host names.
    type: list
    elements: list
    required: true
"""

EXAMPLES = r"""
queue: "{{ [['web-1'], ['web-2', 'web-3']] | ec2fleet.fleet.batch_queue }}"
# -> [{name: web-1, batch: 1}, {name: web-2, batch: 2}, {name: web-3, batch: 2}]
"""

RETURN = r"""
_value:
  description: One dict per host, C(name) and C(batch), in queue order.
  type: list
  elements: dict
"""


def batch_queue(batches):
    if not isinstance(batches, (list, tuple)):
        raise AnsibleFilterError(f"batch_queue expects a list of batches, got {type(batches).__name__}")
    queue = []
    for number, batch in enumerate(batches, start=1):
        if not isinstance(batch, (list, tuple)):
            raise AnsibleFilterError(f"batch {number} is not a list of host names: {batch!r}")
        queue.extend({"name": str(host), "batch": number} for host in batch)
    return queue


class FilterModule:
    def filters(self):
        return {"batch_queue": batch_queue}

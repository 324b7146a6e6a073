"""Filter `ec2fleet.fleet.batch_queue`: flatten planned batches into the order hosts are queued in.

    {{ [['web-1'], ['web-2', 'web-3']] | ec2fleet.fleet.batch_queue }}
    -> [{'name': 'web-1', 'batch': 1}, {'name': 'web-2', 'batch': 2}, {'name': 'web-3', 'batch': 2}]
"""

from __future__ import annotations

from ansible.errors import AnsibleFilterError


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

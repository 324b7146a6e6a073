# Copyright: the ec2-fleet project
# Apache License 2.0
"""Filter `ec2fleet.fleet.rollback_outcome`: the accounting of one batch of a whole-deploy rollback."""

from __future__ import annotations

DOCUMENTATION = r"""
name: rollback_outcome
short_description: Account for a batch a whole-deploy rollback switched back, lost hosts included
description:
  - The counterpart of P(ec2fleet.fleet.batch_outcome#filter) for a batch of
    P(ec2fleet.fleet.rollback_batches#filter), in the same shape (append it to the rollout's outcomes;
    the lock's record, the final results and the report read it the same way), with C(rollback) true.
  - "A host switched back is C(rolled_back); one whose switch back failed, or that could not leave
    service for it (it is still on the new release), C(rollback_failed); one that stopped answering
    C(unreachable), out of service when it had left. Each keeps its result from the deploy (versions,
    times), with C(rollback_scope=deploy), C(error) (C(rollout:) and why the rollout stopped), the
    rollback window's times C(rollback) (out of service) and C(done) (back in service) and
    C(rollback_error)."
positional: _input, active_hosts, results
options:
  _input:
    description: The batch's hosts to switch back (C(hosts) of a P(ec2fleet.fleet.rollback_batches#filter) entry).
    type: list
    elements: str
    required: true
  active_hosts:
    description: The play's hosts still running at the end of the rollback window (C(ansible_play_batch)).
    type: list
    elements: str
    required: true
  results:
    description:
      - Host name to its C(deploy_result) after the switch back (C(rolled_back) or C(rollback_failed),
        C(not_deployed) when it did not leave service; missing or null when it set none).
    type: dict
    required: true
  batch:
    description: The batch's number as planned.
    type: int
    required: true
  outcomes:
    description: The rollout's outcomes so far (each host's result before the rollback).
    type: list
    elements: dict
    required: true
  stop:
    description: Why the rollout stopped, as for P(ec2fleet.fleet.rollback_batches#filter).
    type: dict
    required: true
  service:
    description: The coordinator's steps for the rollback window, as for P(ec2fleet.fleet.batch_outcome#filter).
    type: dict
  gone:
    description: Instance ids known to be terminated.
    type: list
    elements: str
    default: []
"""

EXAMPLES = r"""
outcome: >-
  {{ rollback.hosts | ec2fleet.fleet.rollback_outcome(ansible_play_batch, results, batch=rollback.batch,
     outcomes=deploy_outcomes, stop=deploy_stop, service={'out': out, 'in': back, 'times': times}) }}
"""

RETURN = r"""
_value:
  description: >-
    C(results) (final result per host), C(failed) (switch back failed or lost), C(lost), C(aborted)
    (true), C(reason) (the stop's line), C(rollback) (true), C(batch) and C(to_return) (hosts to put
    back in service).
  type: dict
"""

from ansible.errors import AnsibleFilterError
from ansible_collections.ec2fleet.fleet.plugins.module_utils import deploy_rollout


def rollback_outcome(batch_hosts, active_hosts, results, batch, outcomes, stop, service=None, gone=()):
    try:
        return deploy_rollout.rollback_outcome(
            int(batch), list(batch_hosts), list(active_hosts), dict(results or {}), list(outcomes or []), stop,
            service=dict(service) if service else None, gone=list(gone or ()))
    except ValueError as exc:
        raise AnsibleFilterError(f"rollback_outcome: {exc}") from None


class FilterModule:
    def filters(self):
        return {"rollback_outcome": rollback_outcome}

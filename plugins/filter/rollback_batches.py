# Copyright: the ec2-fleet project
# Apache License 2.0
"""Filter `ec2fleet.fleet.rollback_batches`: the batches a whole-deploy rollback switches back."""

from __future__ import annotations

DOCUMENTATION = r"""
name: rollback_batches
short_description: The batches a stopped rollout switches back, newest first, with every host this deploy moved
description:
  - Takes the rollout's batch outcomes so far (from P(ec2fleet.fleet.batch_outcome#filter), and
    from P(ec2fleet.fleet.rollback_outcome#filter) for rollback batches already run) and why the
    rollout stopped, and returns the batches to switch back to the release before, newest first,
    each with its hosts as planned (so the switch back keeps the batch's capacity rules).
  - A host is listed when its new release is active and its instance still there (C(deployed), or
    C(failed) - active but not healthy back in service); hosts switched back already, lost,
    vanished or never deployed are not. A host a rollback batch accounted for is not listed again,
    so after an interruption the list is what is left.
  - An alarm (O(stop) C(kind=alarm)), an operator's abort at a checkpoint (C(abort)) and a checkpoint
    nobody resumed (C(timeout)) switch back every batch. A failed batch (C(failure)) does only with
    O(scope=all); with O(scope=batch) (the default) the list is empty, the failed batch having
    switched its own hosts back.
positional: _input, stop
options:
  _input:
    description: The batch outcomes so far, in order (C(deploy_outcomes)).
    type: list
    elements: dict
    required: true
  stop:
    description:
      - Why the rollout stopped, C(kind) (V(failure), V(alarm), V(abort) or V(timeout)), C(alarm) (the
        alarm's name, for V(alarm)), C(reason) (CloudWatch's state reason, the operator's note, the
        failure) and C(fired_at) (epoch seconds or ISO-8601 text). Null when it did not stop (empty result).
    type: dict
  scope:
    description: C(deploy_rollback_on_failure), V(batch) or V(all).
    type: str
    default: batch
"""

EXAMPLES = r"""
rollback: >-
  {{ deploy_outcomes | ec2fleet.fleet.rollback_batches({'kind': 'alarm', 'alarm': 'sampleapp-prod-web-5xx',
       'reason': alarm.state_reason, 'fired_at': alarm.state_updated_timestamp}, scope=deploy_rollback_on_failure) }}
"""

RETURN = r"""
_value:
  description: C(batch) (its number as planned), C(hosts) and C(instance_ids), newest batch first.
  type: list
  elements: dict
"""

from ansible.errors import AnsibleFilterError
from ansible_collections.ec2fleet.fleet.plugins.module_utils import deploy_rollout


def rollback_batches(outcomes, stop=None, scope="batch"):
    try:
        return deploy_rollout.rollback_batches(list(outcomes or []), stop, str(scope or "batch").strip().lower())
    except ValueError as exc:
        raise AnsibleFilterError(f"rollback_batches: {exc}") from None


class FilterModule:
    def filters(self):
        return {"rollback_batches": rollback_batches}

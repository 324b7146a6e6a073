# Copyright: the ec2-fleet project
# Apache License 2.0
"""Filter `ec2fleet.fleet.batch_outcome`: what a finished batch means for the rollout."""

from __future__ import annotations

DOCUMENTATION = r"""
name: batch_outcome
short_description: Account for a finished deploy batch, lost hosts included, and decide whether the rollout goes on
description:
  - Takes the batch's planned hosts and returns the final result of each, the hosts that failed,
    the hosts that were lost (no longer in the play at the end of the batch, or whose result never
    reached a final status - unreachable, frozen, terminated), and whether the rollout stops.
  - A lost host counts as failed; when it had left service (C(out_of_service) in its result) it
    is reported as left out of service, for the deploy lock to keep.
  - A failed canary always stops the rollout; any other batch stops it when the failed share of
    all hosts exceeds O(max_fail_percentage).
positional: _input, active_hosts, results
options:
  _input:
    description: The batch's real hosts, as planned.
    type: list
    elements: str
    required: true
  active_hosts:
    description: The play's hosts still running at the end of the batch (C(ansible_play_batch)).
    type: list
    elements: str
    required: true
  results:
    description: Host name to its C(deploy_result) (missing or null when it set none).
    type: dict
    required: true
  batch:
    description: The batch's 1-based number.
    type: int
    required: true
  canary:
    description: Whether this batch is the canary.
    type: bool
    default: false
  max_fail_percentage:
    description: Share of all hosts that may fail before the rollout stops.
    type: float
    default: 0
  total_hosts:
    description: Number of hosts in the whole rollout.
    type: int
    required: true
  failed_before:
    description: Hosts that failed in earlier batches.
    type: int
    default: 0
  service:
    description:
      - The coordinator's steps for the batch - C(out) and C(in) (instance id to its entry, as
        M(ec2fleet.fleet.service_state) returns them in C(instances); C(in) null before the batch
        returns to service) and C(times) (epoch seconds C(out), C(drained), C(in), C(back)).
      - Before the return to service, a host whose new release is active counts as deployed and
        the result's C(to_return) lists the instance ids to put back in service.
    type: dict
  gone:
    description: Instance ids known to be terminated (a lost host whose instance is gone is not out of service).
    type: list
    elements: str
    default: []
  version:
    description: The release being deployed (a deployed host's C(version_after)).
    type: str
    default: ""
"""

EXAMPLES = r"""
outcome: >-
  {{ batch_hosts | ec2fleet.fleet.batch_outcome(ansible_play_batch, results, batch=2, canary=false,
     max_fail_percentage=0, total_hosts=10) }}
"""

RETURN = r"""
_value:
  description: >-
    C(results) (final result per host), C(failed), C(lost) (host names), C(aborted), C(reason) and
    C(to_return) (instance ids to put back in service).
  type: dict
"""

from ansible_collections.ec2fleet.fleet.plugins.module_utils.deploy_rollout import batch_outcome as _batch_outcome


def batch_outcome(batch_hosts, active_hosts, results, batch, total_hosts, canary=False, max_fail_percentage=0,
                  failed_before=0, service=None, gone=(), version=""):
    return _batch_outcome(
        int(batch), list(batch_hosts), list(active_hosts), dict(results or {}), bool(canary),
        float(max_fail_percentage), int(total_hosts), int(failed_before),
        service=dict(service) if service else None, gone=list(gone or ()), version=str(version or ""),
    )


class FilterModule:
    def filters(self):
        return {"batch_outcome": batch_outcome}

"""Jinja2 filter ``ec2fleet.fleet.deploy_plan``: plan a rolling deploy over Auto Scaling groups,
capacity included (MinSize, min_healthy, surge). Pure logic, no AWS calls: the code is
``module_utils/deploy_plan.py`` (``plan_deploy``)."""

from __future__ import annotations

DOCUMENTATION = r"""
name: deploy_plan
short_description: Plan a rolling deploy over Auto Scaling groups, capacity included
description:
  - Takes the hosts to deploy (dicts C(name), C(instance_id), C(region), C(az), C(asg) (none when
    not in an Auto Scaling group), C(current_version), C(lifecycle_state), C(health_status)) and
    the targeted Auto Scaling groups as C(amazon.aws.autoscaling_group_info) returns them, and
    returns the batches, what is skipped or left alone, the capacity each group needs during the
    rollout and the reasons not to start (C(refusals)).
  - Hosts already on the version are skipped (unless O(force)). An instance an interrupted deploy
    left in Standby (O(recovered_standby)) is always redeployed. Instances in Standby for another
    reason, C(Pending*), C(Terminating*) or any state but C(InService) are left alone and listed.
    The lifecycle state and health of an ASG host come from O(groups) (fresher than the inventory).
  - The first batch is the canary, O(canary) hosts (at most O(batch_size)) from the group with the
    most hosts to deploy; then batches of O(batch_size) hosts (a count, or a percentage of the hosts
    to deploy rounded down, at least 1). When everything fits in the canary batch there is one
    batch and no canary (C(canary) 0).
  - Every batch takes at most O(max_az_share) of the hosts to deploy of each (ASG, AZ) pair
    (rounded down, at least 1) and, per group, at most C(InService + surge - min_healthy) of its
    InService instances (instances already in Standby do not count). Hosts outside any ASG are one
    group of their own with only the batch size and AZ share rules.
  - Batches are spread round robin over groups (most hosts left first), then over each group's
    AZs; names in natural order; the same input gives the same plan.
  - With O(strategy=zonal) the batches go one AZ after the other (AZs in natural order), each batch
    within one AZ, by the same rules (a percentage O(batch_size) is of the AZ's hosts to deploy); the
    canary comes from the first AZ's largest group; the first AZ's last batch is watched
    O(zonal_monitor_seconds); each AZ keeps O(zonal_min_healthy_percent) of its targeted hosts in
    service (refused for an AZ where that leaves none to take out).
  - The plan says how long each batch bakes in service before the next (C(bake)) and which batches
    end at a checkpoint (C(checkpoints)). What it adds is a number per batch and an entry per AZ and
    checkpoint, small enough for the deploy lock's record whatever the fleet.
  - O(capacity) decides what happens when keeping MinSize or O(min_healthy) needs a change; see
    there. C(EnterStandby) lowers DesiredCapacity, which may not go below MinSize;
    C(ExitStandby) raises it, which may not go above MaxSize.
  - Refuses (one line each in C(refusals), naming the group and what to change) weighted capacity
    (C(desired_capacity_type) other than units, or instance weights), Classic Load Balancers, targets
    in more than one region, a group not at desired capacity or with unhealthy InService instances,
    a breach of MinSize or min_healthy the capacity mode may not fix, a MaxSize too small for the
    mode, a host no longer in its group, an unhealthy host outside any group, and more than 20
    groups to deploy (the deploy keeps per-group state in one SSM parameter of at most 4 KiB).
    The batches are still planned, for display; never run a plan with refusals.
  - Errors in the arguments themselves (unknown setting, bad percentage, duplicate host) fail the
    template instead.
positional: _input, groups, settings
options:
  _input:
    description: The hosts, dicts with at least C(name); ASG hosts also need C(instance_id).
    type: list
    elements: dict
    required: true
  groups:
    description:
      - The Auto Scaling groups by name, each a dict as C(amazon.aws.autoscaling_group_info) returns
        it (C(min_size), C(max_size), C(desired_capacity), C(desired_capacity_type),
        C(load_balancer_names), C(target_group_arns), C(instances) with C(instance_id),
        C(lifecycle_state), C(health_status), C(availability_zone)).
      - The module's C(results) list (dicts with C(auto_scaling_group_name)) is accepted too.
    type: raw
    required: true
  settings:
    description:
      - The settings below as one dict; keyword arguments given to the filter override its keys.
    type: dict
    default: {}
  version:
    description: The version being deployed (required, in O(settings) or as a keyword).
    type: str
  force:
    description: Deploy to hosts already on O(version) too.
    type: bool
    default: false
  canary:
    description: Hosts in the first batch (0 for no canary batch).
    type: int
    default: 1
  batch_size:
    description: Hosts per batch, a count or a percentage string of the hosts to deploy.
    type: raw
    default: 1
  max_az_share:
    description: Most hosts of one (ASG, AZ) pair out at once, a count or a percentage of the pair's hosts to deploy.
    type: raw
    default: "50%"
  min_healthy:
    description:
      - Per group, the fewest InService instances it keeps while deploying, a count or a percentage
        of the group's desired capacity (rounded up; a count larger than the desired capacity means
        all of it).
    type: raw
    default: "50%"
  capacity:
    description:
      - V(auto) lowers MinSize for the rollout where a batch would take DesiredCapacity below it,
        and surges a group (DesiredCapacity, and MaxSize if needed, up by the number needed) where
        even one host out would breach O(min_healthy).
      - V(reduce) only lowers MinSize; a group where O(min_healthy) cannot be kept is refused.
      - V(surge) raises DesiredCapacity (and MaxSize) of each group by its largest per-batch share,
        so InService never drops below the original desired capacity; MinSize is not changed.
      - V(none) changes nothing; batches are kept small enough for MinSize and O(min_healthy), and a
        group where even one host out would breach either is refused.
    type: str
    choices: [auto, reduce, surge, none]
    default: auto
  recovered_standby:
    description:
      - Instance ids an interrupted deploy left in Standby (the deploy lock's C(standby)). Those in
        Standby are redeployed (ahead of the other hosts of their ASG and AZ), never skipped, not
        counted as InService and not refused.
    type: list
    elements: str
    default: []
  strategy:
    description: V(batches) (batches spread over the AZs) or V(zonal) (one AZ at a time).
    type: str
    choices: [batches, zonal]
    default: batches
  bake_seconds:
    description: Seconds every batch bakes in service before the next starts (the last one too).
    type: int
    default: 0
  canary_bake_seconds:
    description: Seconds the canary batch, and a batch ending at a checkpoint, bakes (when longer than O(bake_seconds)).
    type: int
    default: 0
  checkpoints:
    description:
      - Percentages (1 to 99) of the hosts to deploy; each is at the first batch boundary at or past it.
        Percentages reached by the same batch share its checkpoint; one only the last batch reaches is
        dropped (the rollout ends there).
    type: list
    elements: int
    default: []
  zonal_monitor_seconds:
    description: With O(strategy=zonal), seconds the first AZ's last batch bakes (the others' O(bake_seconds)).
    type: int
    default: 0
  zonal_min_healthy_percent:
    description:
      - With O(strategy=zonal), the share (0 to 99) of each AZ's targeted hosts in service (hosts to
        deploy and hosts skipped) that stays in service; rounded up.
    type: int
    default: 0
notes:
  - Surge instances are launched by the group with whatever a new instance gets (the release of
    the last successful deploy) and are not in the batches. Wait until they are InService and
    healthy before the first batch, and remove exactly them afterwards
    (C(TerminateInstanceInAutoScalingGroup) with C(ShouldDecrementDesiredCapacity)) before setting
    C(original) back (lowering DesiredCapacity lets the termination policy pick freshly deployed
    instances instead).
  - Record C(capacity) in the deploy lock before changing a group, so a crashed run can restore it.
"""

EXAMPLES = r"""
- name: Describe the targeted groups
  amazon.aws.autoscaling_group_info:
    name: "^({{ deploy_asgs | join('|') }})$"
  register: asg_info

- name: Plan the rollout
  ansible.builtin.set_fact:
    deploy_plan: >-
      {{ deploy_hosts | ec2fleet.fleet.deploy_plan(asg_info.results, {
           'version': app_version, 'canary': 1, 'batch_size': '25%', 'max_az_share': '50%',
           'min_healthy': '75%', 'capacity': 'auto', 'recovered_standby': recovered_ids,
           'strategy': 'zonal', 'bake_seconds': 60, 'canary_bake_seconds': 300, 'checkpoints': [10, 50],
           'zonal_monitor_seconds': 600, 'zonal_min_healthy_percent': 50}) }}

- name: Stop when the fleet is not fit for it
  ansible.builtin.assert:
    that: deploy_plan.refusals | length == 0
    fail_msg: "{{ deploy_plan.refusals | join('; ') }}"

- name: Keywords work too
  ansible.builtin.debug:
    msg: "{{ deploy_hosts | ec2fleet.fleet.deploy_plan(groups_by_name, version=app_version, capacity='none') }}"
"""

RETURN = r"""
_value:
  description: The plan, a plain dict.
  type: dict
  contains:
    batches:
      description: Lists of host names in order, the canary first (if any).
      type: list
      elements: list
    canary:
      description: Hosts in the canary batch, the first of O(batches); 0 when there is none.
      type: int
    skipped:
      description: Names of the hosts already on the version.
      type: list
      elements: str
    left_alone:
      description: Hosts the deploy must not touch, dicts C(name), C(instance_id), C(reason).
      type: list
      elements: dict
    capacity:
      description:
        - Groups whose settings change for the rollout, by name, each with C(original) and C(during)
          (C(min_size), C(max_size), C(desired_capacity)) and C(surge), the instances added.
        - Set C(during) before the first batch and C(original) back after the last.
      type: dict
    min_healthy:
      description:
        - Per group with hosts to deploy, the InService instances it keeps.
        - Its keys are the groups the deploy touches (to suspend processes on, to record in the lock).
      type: dict
    refusals:
      description: One line per reason not to run this plan; empty when it may run.
      type: list
      elements: str
    strategy:
      description: V(batches) or V(zonal).
      type: str
    bake:
      description:
        - Per batch (same order as C(batches)), the seconds it stays in service, watched, before the next
          batch starts (or the rollout ends); 0 for none. The longest of O(bake_seconds), the canary's and a
          checkpoint's O(canary_bake_seconds), and an AZ's monitor.
      type: list
      elements: int
    checkpoints:
      description:
        - "The batches that end at a checkpoint, in order: C(number) (1, 2, ...), C(batch) (1-based),
          C(percents) (the O(checkpoints) it stands for), C(hosts) (hosts deployed once it is done) and
          C(of) (hosts to deploy)."
      type: list
      elements: dict
    zones:
      description:
        - With O(strategy=zonal), the waves in order, C(az), C(batches) (its first and last batch number)
          and C(monitor) (seconds its last batch bakes); empty otherwise.
      type: list
      elements: dict
"""

from ansible_collections.ec2fleet.fleet.plugins.module_utils.deploy_plan import DeployPlanError, plan_deploy

try:
    from ansible.errors import AnsibleFilterError
except ImportError:  # pragma: no cover - outside Ansible
    AnsibleFilterError = ValueError


def deploy_plan(hosts, groups, settings=None, **overrides):
    if settings is not None and not isinstance(settings, dict):
        raise AnsibleFilterError(f"deploy_plan: settings must be a dict, got {type(settings).__name__}")
    merged = dict(settings or {})
    merged.update(overrides)
    try:
        return plan_deploy(hosts, groups, merged)
    except DeployPlanError as exc:
        raise AnsibleFilterError(f"deploy_plan: {exc}") from None


class FilterModule:
    def filters(self):
        return {"deploy_plan": deploy_plan}

#!/usr/bin/python
"""Ansible module: check every setting of a rolling deploy before anything runs, in one place."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: deploy_settings
short_description: Check and normalize the settings of a rolling deploy before anything else runs
description:
  - Receives every setting of C(playbooks/deploy.yml) and C(playbooks/rollback.yml) as the operator
    gave it (C(-e) values arrive as strings, so most options take any type and are checked here),
    and either returns them normalized in RV(settings) (counts as integers, percentages as
    C(N%) strings, booleans as booleans, process names as AWS spells them) or fails with one line
    per bad setting, naming the setting as the operator types it and saying what it accepts.
  - "The line reads C(<setting>=<value> is not valid: [<reason>; ]expected <what it accepts>), for
    example C(-e deploy_lock_ttl=30) fails with
    C(deploy_lock_ttl='30' is not valid: expected a number of seconds of at least 60). Several bad
    settings still make one line, their messages joined by C( | ); RV(errors) lists them one by one."
  - "Meant as the first task of the deploy, in a C(hosts: localhost) play before any other, so a
    typo stops the run before a host, a lock or an Auto Scaling group is touched, instead of
    ending later in a template error."
  - Extra vars win over any fact, so a C(set_fact) cannot replace the raw C(-e) value; later tasks
    read the normalized values from the registered result.
  - Makes no AWS call and changes nothing; supports check mode (same checks).
version_added: "0.1.0"
author: ec2-fleet project (!UNKNOWN)
options:
  app_version:
    description:
      - The release to deploy, a version, never a path. 1 to 64 characters, letters, digits,
        C(.), C(_), C(+) and C(-), starting with a letter or digit, without C(..) (V(2.0.0),
        V(2.1.0-rc.1+build.7)).
      - The deploy cannot run without it; O(app_version_required=false) lets it be absent for
        C(playbooks/rollback.yml), which resolves the release itself.
    type: raw
  app_version_required:
    description: Fail when O(app_version) is missing or empty.
    type: bool
    default: true
  rollback_version:
    description: The release C(playbooks/rollback.yml) goes back to; optional, same rule as O(app_version).
    type: raw
  deploy_target:
    description: The host pattern the deploy targets (a group such as V(role_web), V(asg_web), V(env_prod)).
    type: raw
    default: role_web
  targets:
    description:
      - The inventory host names O(deploy_target) matched, as the playbook found them
        (C(query('ansible.builtin.inventory_hostnames', deploy_target))). An empty list fails,
        naming the pattern and some groups of the inventory (O(inventory_groups)).
      - Omitted, the match is not checked.
    type: list
    elements: str
  inventory_groups:
    description:
      - The inventory's group names, listed when O(deploy_target) matches no host. A list of names,
        or the C(groups) magic variable itself (then only groups with hosts are listed).
        C(all) and C(ungrouped) are never listed.
    type: raw
  deploy_canary:
    description: Hosts in the canary batch, a count of 0 or more (0 for no canary).
    type: raw
    default: 1
  deploy_batch_size:
    description: Hosts per batch after the canary, a count of at least 1 or a percentage from V(1%) to V(100%).
    type: raw
    default: "25%"
  deploy_max_az_share:
    description:
      - Most of one AZ's targeted hosts out of service at once, a count of at least 1 or a
        percentage from V(1%) to V(100%).
    type: raw
    default: "50%"
  deploy_min_healthy:
    description:
      - Instances of each Auto Scaling group that stay in service, a count of 0 or more or a
        percentage of desired capacity from V(0%) to V(99%).
    type: raw
    default: "50%"
  deploy_capacity:
    description:
      - How the deploy keeps capacity while hosts are out of service, V(auto), V(reduce), V(surge)
        or V(none) (case does not matter).
    type: raw
    default: auto
  deploy_lifecycle_hooks:
    description:
      - What the deploy does with launch lifecycle hooks that ExitStandby runs, V(complete) or
        V(heartbeat) (case does not matter).
    type: raw
    default: complete
  deploy_max_fail_percentage:
    description:
      - Share of hosts that may fail before the rollout stops, a whole number from 0 to 100 (V(10%) reads as 10).
    type: raw
    default: 0
  deploy_force:
    description: Redeploy hosts already on the version; any boolean Ansible accepts (V(true), V(yes), V(on), V(1), ...).
    type: raw
    default: false
  deploy_stage:
    description:
      - Stage the release on every target before the rollout, while they serve, so that a host's
        time out of service is only the switch, the restart and the health gate; V(false) installs
        it inside each host's window (slower, the fleet short of capacity longer). Any boolean.
    type: raw
    default: true
  deploy_lock_ttl:
    description: Seconds the deploy lock lives, at least 60.
    type: raw
    default: 600
  deploy_standby_timeout:
    description: Seconds to wait for Standby and drain, at least 1.
    type: raw
    default: 600
  deploy_health_timeout:
    description: Seconds to wait for health in every target group, at least 1.
    type: raw
    default: 600
  deploy_poll_interval:
    description: Seconds between two polls while waiting, at least 1 and less than both timeouts.
    type: raw
    default: 2
  deploy_suspend_processes:
    description:
      - Auto Scaling processes suspended during the deploy, a list or a comma-separated string, each
        one of V(AddToLoadBalancer), V(AlarmNotification), V(AZRebalance), V(HealthCheck),
        V(InstanceRefresh), V(ReplaceUnhealthy), V(ScheduledActions) (case does not matter). An
        empty list suspends nothing.
      - V(Launch) and V(Terminate) are refused, with the reason.
    type: raw
    default: [AZRebalance, ReplaceUnhealthy, AlarmNotification, ScheduledActions]
  deploy_keep_releases:
    description: Releases kept on each host, at least 2 (the one running and one to roll back to).
    type: raw
    default: 3
  deploy_alarms:
    description:
      - CloudWatch alarms (metric or composite) that gate the rollout, a list of alarm names or a
        comma-separated string of them (a name with a comma needs the list form); at most 100, each
        1 to 255 characters without control characters. Duplicates are dropped. Empty, no alarm gate.
    type: raw
    default: []
  deploy_alarms_insufficient_data:
    description:
      - How an alarm in C(INSUFFICIENT_DATA) counts, V(ok) or V(alarm) (case does not matter).
    type: raw
    default: ok
  deploy_bake_seconds:
    description: Seconds each batch stays in service, watched, before the next starts; 0 or more (0 for no bake).
    type: raw
    default: 0
  deploy_canary_bake_seconds:
    description:
      - Seconds the canary batch bakes (and a batch ending at a checkpoint), 0 or more, or V(auto).
      - V(auto) is 0 when none of O(deploy_alarms), O(deploy_bake_seconds) and O(deploy_checkpoints)
        is set, else the larger of 300 and twice O(deploy_bake_seconds). RV(settings) holds the count.
    type: raw
    default: auto
  deploy_rollback_on_failure:
    description:
      - What a failed batch switches back, V(batch) (its own hosts) or V(all) (every host this deploy
        moved, newest batch first). An alarm always switches back all.
    type: raw
    default: batch
  deploy_checkpoints:
    description:
      - Percentages of the hosts to deploy at which the rollout pauses (at the first batch boundary at or
        past each), a list or a comma-separated string of whole numbers from 1 to 99 (V(10%) reads as
        10); sorted, duplicates dropped. Empty, no checkpoint.
    type: raw
    default: []
  deploy_checkpoint_wait:
    description:
      - What a checkpoint waits for after its bake, V(bake) (nothing more) or V(resume) (an operator's
        C(playbooks/deploy-resume.yml), from any controller).
    type: raw
    default: bake
  deploy_checkpoint_timeout:
    description: With O(deploy_checkpoint_wait=resume), seconds to wait for the operator, at least 60.
    type: raw
    default: 3600
  deploy_strategy:
    description: V(batches) (batches spread over the AZs) or V(zonal) (one AZ at a time).
    type: raw
    default: batches
  deploy_zonal_monitor_seconds:
    description: With O(deploy_strategy=zonal), seconds the first AZ is watched after its last batch, 0 or more.
    type: raw
    default: 600
  deploy_zonal_min_healthy_percent:
    description:
      - With O(deploy_strategy=zonal), the share of each AZ's targeted hosts that stays in service, a
        whole percentage from 0 to 99 (0 leaves it to O(deploy_max_az_share)).
    type: raw
    default: 0
notes:
  - Settings this module does not know are not its concern; pass only these.
  - Omitting an option (C(default(omit))) takes the default shown, the same as C(playbooks/vars/deploy.yml).
"""

EXAMPLES = r"""
# The first play of playbooks/deploy.yml: nothing else runs when a setting is wrong.
- name: Check the deploy settings
  ec2fleet.fleet.deploy_settings:
    app_version: "{{ app_version | default(omit) }}"
    deploy_target: "{{ deploy_target }}"
    # An empty list when nothing matches (never a template error); the module says so.
    targets: "{{ query('ansible.builtin.inventory_hostnames', deploy_target) }}"
    inventory_groups: "{{ groups | dict2items | selectattr('value') | map(attribute='key') | list }}"
    deploy_canary: "{{ deploy_canary }}"
    deploy_batch_size: "{{ deploy_batch_size }}"
    deploy_max_az_share: "{{ deploy_max_az_share }}"
    deploy_min_healthy: "{{ deploy_min_healthy | default(omit) }}"
    deploy_capacity: "{{ deploy_capacity | default(omit) }}"
    deploy_lifecycle_hooks: "{{ deploy_lifecycle_hooks | default(omit) }}"
    deploy_max_fail_percentage: "{{ deploy_max_fail_percentage }}"
    deploy_force: "{{ deploy_force }}"
    deploy_stage: "{{ deploy_stage }}"
    deploy_lock_ttl: "{{ deploy_lock_ttl }}"
    deploy_standby_timeout: "{{ deploy_standby_timeout }}"
    deploy_health_timeout: "{{ deploy_health_timeout }}"
    deploy_poll_interval: "{{ deploy_poll_interval }}"
    deploy_suspend_processes: "{{ deploy_suspend_processes }}"
    deploy_keep_releases: "{{ deploy_keep_releases | default(omit) }}"
    deploy_alarms: "{{ deploy_alarms | default(omit) }}"
    deploy_alarms_insufficient_data: "{{ deploy_alarms_insufficient_data | default(omit) }}"
    deploy_bake_seconds: "{{ deploy_bake_seconds | default(omit) }}"
    deploy_canary_bake_seconds: "{{ deploy_canary_bake_seconds | default(omit) }}"
    deploy_rollback_on_failure: "{{ deploy_rollback_on_failure | default(omit) }}"
    deploy_checkpoints: "{{ deploy_checkpoints | default(omit) }}"
    deploy_checkpoint_wait: "{{ deploy_checkpoint_wait | default(omit) }}"
    deploy_checkpoint_timeout: "{{ deploy_checkpoint_timeout | default(omit) }}"
    deploy_strategy: "{{ deploy_strategy | default(omit) }}"
    deploy_zonal_monitor_seconds: "{{ deploy_zonal_monitor_seconds | default(omit) }}"
    deploy_zonal_min_healthy_percent: "{{ deploy_zonal_min_healthy_percent | default(omit) }}"
    rollback_version: "{{ rollback_version | default(omit) }}"
  register: deploy_settings

- name: Use a normalized value
  ansible.builtin.debug:
    msg: "batches of {{ deploy_settings.settings.deploy_batch_size }}"
"""

RETURN = r"""
settings:
  description:
    - Every setting, normalized. Counts are integers, percentages C(N%) strings,
      O(deploy_force) and O(deploy_stage) booleans, O(deploy_capacity) lower case, O(deploy_suspend_processes) a
      list of AWS process names (duplicates dropped), O(rollback_version) null when not given.
    - O(deploy_alarms) a list of names, O(deploy_checkpoints) a sorted list of whole percentages,
      O(deploy_canary_bake_seconds) the count of seconds (V(auto) resolved), choices lower case.
  returned: success
  type: dict
  sample:
    app_version: "2.0.0"
    deploy_target: role_web
    deploy_canary: 1
    deploy_batch_size: "25%"
    deploy_max_az_share: "50%"
    deploy_min_healthy: "50%"
    deploy_capacity: auto
    deploy_lifecycle_hooks: complete
    deploy_max_fail_percentage: 0
    deploy_force: false
    deploy_stage: true
    deploy_lock_ttl: 600
    deploy_standby_timeout: 600
    deploy_health_timeout: 600
    deploy_poll_interval: 2
    deploy_suspend_processes: [AZRebalance, ReplaceUnhealthy, AlarmNotification, ScheduledActions]
    deploy_keep_releases: 3
    deploy_alarms: [sampleapp-prod-web-5xx]
    deploy_alarms_insufficient_data: ok
    deploy_bake_seconds: 60
    deploy_canary_bake_seconds: 300
    deploy_rollback_on_failure: batch
    deploy_checkpoints: [10, 50]
    deploy_checkpoint_wait: bake
    deploy_checkpoint_timeout: 3600
    deploy_strategy: batches
    deploy_zonal_monitor_seconds: 600
    deploy_zonal_min_healthy_percent: 0
    rollback_version: null
targets:
  description: The host names O(deploy_target) matched (O(targets)), null when not given.
  returned: success
  type: list
  elements: str
  sample: [web-1, web-2, web-3]
errors:
  description: One entry per bad setting, in the order of the options above.
  returned: failed
  type: list
  elements: dict
  sample: [{setting: deploy_batch_size, value: lots,
            message: "deploy_batch_size='lots' is not valid: expected a host count of at least 1 or a
                      percentage from 1% to 100% (like 3 or 25%)"}]
"""

import difflib
import re

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.parsing.convert_bool import boolean

PROCESSES = ("Launch", "Terminate", "AddToLoadBalancer", "AlarmNotification", "AZRebalance", "HealthCheck",
             "InstanceRefresh", "ReplaceUnhealthy", "ScheduledActions")
# Why the deploy never suspends these two (AWS: "How suspended processes affect other processes").
REFUSED_PROCESSES = {
    "Launch": "while Launch is suspended ReplaceUnhealthy terminates unhealthy instances without replacing "
              "them and the group cannot add the capacity a surge needs",
    "Terminate": "while Terminate is suspended the group cannot scale in, so capacity added for the deploy "
                 "stays and AZRebalance can grow the group beyond its MaxSize",
}
SUSPENDABLE = tuple(p for p in PROCESSES if p not in REFUSED_PROCESSES)
CAPACITY_MODES = ("auto", "reduce", "surge", "none")
LIFECYCLE_HOOK_MODES = ("complete", "heartbeat")
INSUFFICIENT_DATA_MODES = ("ok", "alarm")
ROLLBACK_SCOPES = ("batch", "all")
CHECKPOINT_WAITS = ("bake", "resume")
STRATEGIES = ("batches", "zonal")
# DescribeAlarms takes at most 100 names a call; CloudWatch alarm names are 1 to 255 characters.
MAX_ALARMS = 100
ALARM_NAME_CHARS = 255
# deploy_canary_bake_seconds=auto: the canary bakes at least this long, and twice the batches' bake.
CANARY_BAKE_FLOOR = 300
VERSION = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,63}")
INTEGER = re.compile(r"[+-]?[0-9]+")
PERCENT = re.compile(r"([0-9]+)\s*%")
BOOLEAN_WORDS = "true, false, yes, no, on, off, y, n, t, f, 1 or 0"
SHOWN_GROUPS = 8
NEVER_LISTED_GROUPS = ("all", "ungrouped")
USUAL_GROUP_PREFIXES = ("role_", "asg_", "env_")

DEFAULTS = {
    "deploy_target": "role_web",
    "deploy_canary": 1,
    "deploy_batch_size": "25%",
    "deploy_max_az_share": "50%",
    "deploy_min_healthy": "50%",
    "deploy_capacity": "auto",
    "deploy_lifecycle_hooks": "complete",
    "deploy_max_fail_percentage": 0,
    "deploy_force": False,
    "deploy_stage": True,
    "deploy_lock_ttl": 600,
    "deploy_standby_timeout": 600,
    "deploy_health_timeout": 600,
    "deploy_poll_interval": 2,
    "deploy_suspend_processes": ["AZRebalance", "ReplaceUnhealthy", "AlarmNotification", "ScheduledActions"],
    "deploy_keep_releases": 3,
    "deploy_alarms": [],
    "deploy_alarms_insufficient_data": "ok",
    "deploy_bake_seconds": 0,
    "deploy_canary_bake_seconds": "auto",
    "deploy_rollback_on_failure": "batch",
    "deploy_checkpoints": [],
    "deploy_checkpoint_wait": "bake",
    "deploy_checkpoint_timeout": 3600,
    "deploy_strategy": "batches",
    "deploy_zonal_monitor_seconds": 600,
    "deploy_zonal_min_healthy_percent": 0,
}

VERSION_RULE = ("a release version of 1 to 64 letters, digits, '.', '_', '+' or '-', starting with a letter or "
                "digit, without '..' (like 2.0.0 or 2.1.0-rc.1+build.7), never a path")


class Invalid(ValueError):
    """A bad value: ``expected`` says what the setting accepts, ``reason`` (optional) what is wrong."""

    def __init__(self, expected, reason=None):
        super().__init__(expected)
        self.expected, self.reason = expected, reason


def shown(value, limit=80):
    """The value as the message shows it: one line, quoted when a string, shortened when long."""
    # repr escapes line breaks, so the value never breaks the line.
    text = repr(value) if isinstance(value, (str, list, tuple, dict)) else " ".join(str(value).split())
    return text if len(text) <= limit else text[:limit - 3] + "..."


def message(setting, value, problem):
    reason = f"{problem.reason}; " if problem.reason else ""
    return f"{setting}={shown(value)} is not valid: {reason}expected {problem.expected}"


# --- one kind of value each ----------------------------------------------------------------------

def integer(value):
    """An int from an int, an integral float or a string of digits; None otherwise (booleans too)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value) if value.is_integer() else None
    if isinstance(value, str) and INTEGER.fullmatch(value.strip()):
        return int(value.strip())
    return None


def count(value, minimum, expected):
    number = integer(value)
    if number is None or number < minimum:
        raise Invalid(expected)
    return number


def amount(value, min_count, min_percent, max_percent, expected):
    """A count (int) or a percentage ("N%")."""
    if isinstance(value, str) and value.strip().endswith("%"):
        found = PERCENT.fullmatch(value.strip())
        if found and min_percent <= int(found.group(1)) <= max_percent:
            return f"{int(found.group(1))}%"
        raise Invalid(expected)
    return count(value, min_count, expected)


def version(value):
    if isinstance(value, float):
        raise Invalid(VERSION_RULE, "a number loses digits (2.10 reads as 2.1), quote the version")
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not VERSION.fullmatch(value) or ".." in value:
        raise Invalid(VERSION_RULE)
    return value


def percentage(value, expected, lowest=0, highest=100):
    if isinstance(value, str) and value.strip().endswith("%"):
        value = value.strip()[:-1]
    number = integer(value)
    if number is None or not lowest <= number <= highest:
        raise Invalid(expected)
    return number


def items(value, expected):
    """A list from a list, or from a string of comma-separated items ("a,b", "[a, b]", "'a', 'b'")."""
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("[") and text.endswith("]"):
            text = text[1:-1]
        return [item.strip().strip("'\"").strip() for item in text.split(",") if item.strip()]
    if isinstance(value, (list, tuple)):
        return list(value)
    raise Invalid(expected)


def alarm_names(value):
    expected = (f"a list (possibly empty), or comma-separated names, of at most {MAX_ALARMS} CloudWatch alarm names "
                f"(1 to {ALARM_NAME_CHARS} characters each, no control characters)")
    names = []
    for name in items(value, expected):
        if not isinstance(name, str) or not name.strip() or len(name) > ALARM_NAME_CHARS \
                or any(ord(c) < 32 or ord(c) == 127 for c in name):
            raise Invalid(expected, f"{shown(name)} is not an alarm name")
        if name not in names:
            names.append(name)
    if len(names) > MAX_ALARMS:
        raise Invalid(expected, f"{len(names)} alarms")
    return names


def checkpoints(value):
    expected = ("a list (possibly empty), or comma-separated values, of whole percentages of the hosts to deploy "
                "from 1 to 99 (like [10, 50])")
    return sorted({percentage(item, expected, 1, 99) for item in items(value, expected)})


def seconds_or_auto(value, expected):
    if isinstance(value, str) and value.strip().lower() == "auto":
        return "auto"
    return count(value, 0, expected)


def flag(value):
    try:
        return boolean(value, strict=True)
    except TypeError:
        raise Invalid(f"a boolean ({BOOLEAN_WORDS})") from None


def choice(value, choices):
    if isinstance(value, str) and value.strip().lower() in choices:
        return value.strip().lower()
    raise Invalid(f"one of {', '.join(choices)}")


def processes(value):
    expected = f"a list (possibly empty), or comma-separated names, of {', '.join(SUSPENDABLE)}"
    if isinstance(value, str):
        # "A,B", "A B" and the "[A, B]" an operator may type after -e all read as a list.
        names = [name for name in re.split(r"[\s,\[\]'\"]+", value) if name]
    elif isinstance(value, (list, tuple)):
        names = value
    else:
        raise Invalid(expected)
    canonical = {p.lower(): p for p in PROCESSES}
    result = []
    for name in names:
        process = canonical.get(name.strip().lower()) if isinstance(name, str) else None
        if process is None:
            raise Invalid(expected, f"{shown(name)} is not an Auto Scaling process")
        if process in REFUSED_PROCESSES:
            raise Invalid(expected, f"{process} must keep running during a deploy ({REFUSED_PROCESSES[process]})")
        if process not in result:
            result.append(process)
    return result


def group_names(value, pattern):
    """Group names worth listing, from a list of names or the `groups` magic variable: those close
    to the pattern (a typo) first, then the deploy's usual kinds (role_, asg_, env_), then the rest."""
    if isinstance(value, dict):
        names = [name for name, hosts in value.items() if hosts]
    elif isinstance(value, (list, tuple)):
        names = [name for name in value if isinstance(name, str)]
    else:
        names = []
    names = sorted({name for name in names if name not in NEVER_LISTED_GROUPS})
    close = difflib.get_close_matches(pattern, names, n=3, cutoff=0.6)
    usual = [name for name in names if name.startswith(USUAL_GROUP_PREFIXES)]
    return list(dict.fromkeys(close + usual + names))


def target(value, targets, groups):
    expected = "a host pattern of the inventory in use (a group such as role_web, asg_web or env_prod, or any pattern)"
    if not isinstance(value, str) or not value.strip():
        raise Invalid(expected)
    if targets is not None and not targets:
        names = group_names(groups, value)
        if names:
            more = f" (and {len(names) - SHOWN_GROUPS} more)" if len(names) > SHOWN_GROUPS else ""
            such_as = f", such as one of its groups: {', '.join(names[:SHOWN_GROUPS])}{more}"
        else:
            such_as = " (the inventory has no group with hosts: is -i the fleet's inventory?)"
        raise Invalid("a host pattern matching at least one host" + such_as, "it matches no host of the inventory")
    return value


# --- all settings --------------------------------------------------------------------------------

def checks(params):
    """(setting, value, check) in the order errors are reported; check(value) returns the normalized value."""
    return [
        ("app_version", params["app_version"], version),
        ("deploy_target", params["deploy_target"],
         lambda v: target(v, params["targets"], params["inventory_groups"])),
        ("deploy_canary", params["deploy_canary"],
         lambda v: count(v, 0, "a host count of 0 or more (0: no canary batch)")),
        ("deploy_batch_size", params["deploy_batch_size"],
         lambda v: amount(v, 1, 1, 100, "a host count of at least 1 or a percentage from 1% to 100% (like 3 or 25%)")),
        ("deploy_max_az_share", params["deploy_max_az_share"],
         lambda v: amount(v, 1, 1, 100, "a host count of at least 1 or a percentage from 1% to 100% of an AZ's "
                                        "targeted hosts (like 1 or 50%)")),
        ("deploy_min_healthy", params["deploy_min_healthy"],
         lambda v: amount(v, 0, 0, 99, "an instance count of 0 or more or a percentage of desired capacity from "
                                       "0% to 99% (like 2 or 75%)")),
        ("deploy_capacity", params["deploy_capacity"], lambda v: choice(v, CAPACITY_MODES)),
        ("deploy_lifecycle_hooks", params["deploy_lifecycle_hooks"], lambda v: choice(v, LIFECYCLE_HOOK_MODES)),
        ("deploy_max_fail_percentage", params["deploy_max_fail_percentage"],
         lambda v: percentage(v, "a whole percentage from 0 to 100 (0: the first failure stops the rollout)")),
        ("deploy_force", params["deploy_force"], flag),
        ("deploy_stage", params["deploy_stage"], flag),
        ("deploy_lock_ttl", params["deploy_lock_ttl"], lambda v: count(v, 60, "a number of seconds of at least 60")),
        ("deploy_standby_timeout", params["deploy_standby_timeout"],
         lambda v: count(v, 1, "a number of seconds of at least 1")),
        ("deploy_health_timeout", params["deploy_health_timeout"],
         lambda v: count(v, 1, "a number of seconds of at least 1")),
        ("deploy_poll_interval", params["deploy_poll_interval"],
         lambda v: count(v, 1, "a number of seconds of at least 1")),
        ("deploy_suspend_processes", params["deploy_suspend_processes"], processes),
        ("deploy_keep_releases", params["deploy_keep_releases"],
         lambda v: count(v, 2, "a release count of at least 2 (the one running and one to roll back to)")),
        ("deploy_alarms", params["deploy_alarms"], alarm_names),
        ("deploy_alarms_insufficient_data", params["deploy_alarms_insufficient_data"],
         lambda v: choice(v, INSUFFICIENT_DATA_MODES)),
        ("deploy_bake_seconds", params["deploy_bake_seconds"],
         lambda v: count(v, 0, "a number of seconds of 0 or more (0: no bake)")),
        ("deploy_canary_bake_seconds", params["deploy_canary_bake_seconds"],
         lambda v: seconds_or_auto(v, "auto or a number of seconds of 0 or more")),
        ("deploy_rollback_on_failure", params["deploy_rollback_on_failure"], lambda v: choice(v, ROLLBACK_SCOPES)),
        ("deploy_checkpoints", params["deploy_checkpoints"], checkpoints),
        ("deploy_checkpoint_wait", params["deploy_checkpoint_wait"], lambda v: choice(v, CHECKPOINT_WAITS)),
        ("deploy_checkpoint_timeout", params["deploy_checkpoint_timeout"],
         lambda v: count(v, 60, "a number of seconds of at least 60")),
        ("deploy_strategy", params["deploy_strategy"], lambda v: choice(v, STRATEGIES)),
        ("deploy_zonal_monitor_seconds", params["deploy_zonal_monitor_seconds"],
         lambda v: count(v, 0, "a number of seconds of 0 or more")),
        ("deploy_zonal_min_healthy_percent", params["deploy_zonal_min_healthy_percent"],
         lambda v: percentage(v, "a whole percentage from 0 to 99 of each AZ's targeted hosts (0: no rule of "
                                 "its own)", 0, 99)),
        ("rollback_version", params["rollback_version"], version),
    ]


def check(params):
    """``(settings, errors)``: the normalized settings, and one ``{setting, value, message}`` per bad one."""
    settings, errors = {}, []

    def fail(setting, value, problem):
        errors.append({"setting": setting, "value": value, "message": message(setting, value, problem)})

    for setting, value, normalize in checks(params):
        if value is None or (setting in ("app_version", "rollback_version") and value == ""):
            if setting == "app_version" and params["app_version_required"]:
                errors.append({"setting": setting, "value": value, "message":
                               f"app_version is not set: expected the release to deploy, -e app_version=X with X "
                               f"being {VERSION_RULE}"})
                continue
            value = DEFAULTS.get(setting)
            if value is None:
                settings[setting] = None
                continue
        try:
            settings[setting] = normalize(value)
        except Invalid as problem:
            fail(setting, value, problem)

    # The poll interval must leave room for at least two polls in each wait.
    poll = settings.get("deploy_poll_interval")
    waits = [(name, settings[name]) for name in ("deploy_standby_timeout", "deploy_health_timeout") if name in settings]
    if poll is not None and any(poll >= timeout for _name, timeout in waits):
        limit = " and ".join(f"{name} ({timeout})" for name, timeout in waits)
        fail("deploy_poll_interval", params["deploy_poll_interval"],
             Invalid(f"a number of seconds of at least 1 and less than {limit}"))
        settings.pop("deploy_poll_interval")
    if settings.get("deploy_canary_bake_seconds") == "auto":
        settings["deploy_canary_bake_seconds"] = canary_bake(settings)
    return settings, errors


def canary_bake(settings):
    """deploy_canary_bake_seconds=auto: no bake unless something is watched or baked, else longer than a batch's."""
    bake = settings.get("deploy_bake_seconds") or 0
    if not (settings.get("deploy_alarms") or bake or settings.get("deploy_checkpoints")):
        return 0
    return max(CANARY_BAKE_FLOOR, 2 * bake)


ARGUMENT_SPEC = {
    "app_version": {"type": "raw"},
    "app_version_required": {"type": "bool", "default": True},
    "rollback_version": {"type": "raw"},
    "deploy_target": {"type": "raw", "default": DEFAULTS["deploy_target"]},
    "targets": {"type": "list", "elements": "str"},
    "inventory_groups": {"type": "raw"},
    **{name: {"type": "raw", "default": DEFAULTS[name]} for name in DEFAULTS if name != "deploy_target"},
}


def main():
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    settings, errors = check(module.params)
    if errors:
        module.fail_json(msg=" | ".join(error["message"] for error in errors), errors=errors)
    targets = module.params["targets"]
    hosts = f" ({len(targets)} hosts)" if targets is not None else ""
    module.exit_json(
        changed=False, settings=settings, targets=targets,
        msg=f"deploy settings valid: app_version={settings['app_version']}, deploy_target={settings['deploy_target']}"
            f"{hosts}, batches of {settings['deploy_batch_size']} after a canary of {settings['deploy_canary']}",
    )


if __name__ == "__main__":
    main()

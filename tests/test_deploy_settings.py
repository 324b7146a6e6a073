"""ec2fleet.fleet.deploy_settings: every deploy setting checked before anything runs, each bad value
refused with one line naming the setting as the operator types it and what it accepts, good values
normalized; through ``ansible -m`` and through ``ansible-playbook`` with the repo's ansible.cfg
(no "Finalization of task args" template error, nothing after the check runs)."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from ansible_collections.ec2fleet.fleet.plugins.modules import deploy_settings
from deploy_support import run_module

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent

VERSION = ("a release version of 1 to 64 letters, digits, '.', '_', '+' or '-', starting with a letter or digit, "
           "without '..' (like 2.0.0 or 2.1.0-rc.1+build.7), never a path")
CANARY = "a host count of 0 or more (0: no canary batch)"
BATCH = "a host count of at least 1 or a percentage from 1% to 100% (like 3 or 25%)"
AZ_SHARE = "a host count of at least 1 or a percentage from 1% to 100% of an AZ's targeted hosts (like 1 or 50%)"
MIN_HEALTHY = "an instance count of 0 or more or a percentage of desired capacity from 0% to 99% (like 2 or 75%)"
FAIL_PCT = "a whole percentage from 0 to 100 (0: the first failure stops the rollout)"
BOOL = "a boolean (true, false, yes, no, on, off, y, n, t, f, 1 or 0)"
SECONDS = "a number of seconds of at least 1"
PROCESSES = ("a list (possibly empty), or comma-separated names, of AddToLoadBalancer, AlarmNotification, "
             "AZRebalance, HealthCheck, InstanceRefresh, ReplaceUnhealthy, ScheduledActions")
LAUNCH = ("Launch must keep running during a deploy (while Launch is suspended ReplaceUnhealthy terminates "
          "unhealthy instances without replacing them and the group cannot add the capacity a surge needs)")
TERMINATE = ("Terminate must keep running during a deploy (while Terminate is suspended the group cannot scale in, "
             "so capacity added for the deploy stays and AZRebalance can grow the group beyond its MaxSize)")
PATTERN = "a host pattern of the inventory in use (a group such as role_web, asg_web or env_prod, or any pattern)"
NO_HOST = "it matches no host of the inventory; expected a host pattern matching at least one host"
NOT_SET = f"app_version is not set: expected the release to deploy, -e app_version=X with X being {VERSION}"
GROUPS = ["all", "ungrouped", "az_us_east_1a", "az_us_east_1b", "role_web", "asg_web", "env_prod", "bastion"]
MANY_GROUPS = [f"az_{n}" for n in range(10)] + ["role_web", "asg_web_blue", "asg_web_green"]
ALARMS = ("a list (possibly empty), or comma-separated names, of at most 100 CloudWatch alarm names (1 to 255 "
          "characters each, no control characters)")
CHECKPOINTS = ("a list (possibly empty), or comma-separated values, of whole percentages of the hosts to deploy "
               "from 1 to 99 (like [10, 50])")
ZONAL_MIN = "a whole percentage from 0 to 99 of each AZ's targeted hosts (0: no rule of its own)"


def params(**given):
    """The module's parameters as AnsibleModule hands them over: every default, then ``given``."""
    values = {name: rule.get("default") for name, rule in deploy_settings.ARGUMENT_SPEC.items()}
    values.update(app_version="2.0.0", targets=["web-1", "web-2"], inventory_groups=GROUPS)
    values.update(given)
    return values


def bad(setting, value, expected, **others):
    """One row: the setting's bad value and the exact line it must give."""
    return pytest.param({setting: value, **others}, expected, id=f"{setting}={value!r}"[:60])


BAD = [
    bad("app_version", "../../etc/passwd", f"app_version='../../etc/passwd' is not valid: expected {VERSION}"),
    bad("app_version", "releases/2.0.0", f"app_version='releases/2.0.0' is not valid: expected {VERSION}"),
    bad("app_version", "1..2", f"app_version='1..2' is not valid: expected {VERSION}"),
    bad("app_version", ".2.0", f"app_version='.2.0' is not valid: expected {VERSION}"),
    bad("app_version", "-rc1", f"app_version='-rc1' is not valid: expected {VERSION}"),
    bad("app_version", "2.0.0 ", f"app_version='2.0.0 ' is not valid: expected {VERSION}"),
    bad("app_version", "2.0.0\nx", f"app_version='2.0.0\\nx' is not valid: expected {VERSION}"),
    bad("app_version", "v" * 65, f"app_version='{'v' * 65}' is not valid: expected {VERSION}"),
    bad("app_version", 2.1, f"app_version=2.1 is not valid: a number loses digits (2.10 reads as 2.1), quote the "
                            f"version; expected {VERSION}"),
    bad("app_version", ["2.0.0"], f"app_version=['2.0.0'] is not valid: expected {VERSION}"),
    bad("app_version", "", NOT_SET),
    bad("app_version", None, NOT_SET),
    bad("rollback_version", "../1.0.0", f"rollback_version='../1.0.0' is not valid: expected {VERSION}"),
    bad("deploy_target", "", f"deploy_target='' is not valid: expected {PATTERN}"),
    bad("deploy_target", "   ", f"deploy_target='   ' is not valid: expected {PATTERN}"),
    bad("deploy_target", "role_wbe",
        f"deploy_target='role_wbe' is not valid: {NO_HOST}, such as one of its groups: role_web, asg_web, env_prod, "
        "az_us_east_1a, az_us_east_1b, bastion", targets=[]),
    bad("deploy_target", "web-9",
        f"deploy_target='web-9' is not valid: {NO_HOST}, such as one of its groups: asg_web_blue, asg_web_green, "
        "role_web, az_0, az_1, az_2, az_3, az_4 (and 5 more)", targets=[], inventory_groups=MANY_GROUPS),
    bad("deploy_target", "role_web",
        f"deploy_target='role_web' is not valid: {NO_HOST}, such as one of its groups: role_web, asg_web",
        targets=[], inventory_groups={"all": ["web-1"], "ungrouped": [], "asg_web": ["web-1"], "role_web": ["web-1"],
                                      "env_prod": []}),
    bad("deploy_target", "role_web",
        f"deploy_target='role_web' is not valid: {NO_HOST} (the inventory has no group with hosts: is -i the "
        "fleet's inventory?)", targets=[], inventory_groups=None),
    bad("deploy_canary", -1, f"deploy_canary=-1 is not valid: expected {CANARY}"),
    bad("deploy_canary", "one", f"deploy_canary='one' is not valid: expected {CANARY}"),
    bad("deploy_canary", True, f"deploy_canary=True is not valid: expected {CANARY}"),
    bad("deploy_canary", "1.5", f"deploy_canary='1.5' is not valid: expected {CANARY}"),
    bad("deploy_batch_size", "lots", f"deploy_batch_size='lots' is not valid: expected {BATCH}"),
    bad("deploy_batch_size", 0, f"deploy_batch_size=0 is not valid: expected {BATCH}"),
    bad("deploy_batch_size", "0", f"deploy_batch_size='0' is not valid: expected {BATCH}"),
    bad("deploy_batch_size", "-3", f"deploy_batch_size='-3' is not valid: expected {BATCH}"),
    bad("deploy_batch_size", "0%", f"deploy_batch_size='0%' is not valid: expected {BATCH}"),
    bad("deploy_batch_size", "101%", f"deploy_batch_size='101%' is not valid: expected {BATCH}"),
    bad("deploy_batch_size", "12.5%", f"deploy_batch_size='12.5%' is not valid: expected {BATCH}"),
    bad("deploy_batch_size", "%", f"deploy_batch_size='%' is not valid: expected {BATCH}"),
    bad("deploy_batch_size", False, f"deploy_batch_size=False is not valid: expected {BATCH}"),
    bad("deploy_max_az_share", "0%", f"deploy_max_az_share='0%' is not valid: expected {AZ_SHARE}"),
    bad("deploy_max_az_share", "half", f"deploy_max_az_share='half' is not valid: expected {AZ_SHARE}"),
    bad("deploy_min_healthy", "100%", f"deploy_min_healthy='100%' is not valid: expected {MIN_HEALTHY}"),
    bad("deploy_min_healthy", -1, f"deploy_min_healthy=-1 is not valid: expected {MIN_HEALTHY}"),
    bad("deploy_min_healthy", "most", f"deploy_min_healthy='most' is not valid: expected {MIN_HEALTHY}"),
    bad("deploy_capacity", "grow", "deploy_capacity='grow' is not valid: expected one of auto, reduce, surge, none"),
    bad("deploy_capacity", "", "deploy_capacity='' is not valid: expected one of auto, reduce, surge, none"),
    bad("deploy_capacity", 1, "deploy_capacity=1 is not valid: expected one of auto, reduce, surge, none"),
    bad("deploy_max_fail_percentage", 101, f"deploy_max_fail_percentage=101 is not valid: expected {FAIL_PCT}"),
    bad("deploy_max_fail_percentage", "-1", f"deploy_max_fail_percentage='-1' is not valid: expected {FAIL_PCT}"),
    bad("deploy_max_fail_percentage", "150%", f"deploy_max_fail_percentage='150%' is not valid: expected {FAIL_PCT}"),
    bad("deploy_max_fail_percentage", "ten", f"deploy_max_fail_percentage='ten' is not valid: expected {FAIL_PCT}"),
    bad("deploy_force", "maybe", f"deploy_force='maybe' is not valid: expected {BOOL}"),
    bad("deploy_force", "", f"deploy_force='' is not valid: expected {BOOL}"),
    bad("deploy_force", 2, f"deploy_force=2 is not valid: expected {BOOL}"),
    bad("deploy_stage", "sometimes", f"deploy_stage='sometimes' is not valid: expected {BOOL}"),
    bad("deploy_lock_ttl", 59, "deploy_lock_ttl=59 is not valid: expected a number of seconds of at least 60"),
    bad("deploy_lock_ttl", "30", "deploy_lock_ttl='30' is not valid: expected a number of seconds of at least 60"),
    bad("deploy_lock_ttl", "1h", "deploy_lock_ttl='1h' is not valid: expected a number of seconds of at least 60"),
    bad("deploy_standby_timeout", 0, f"deploy_standby_timeout=0 is not valid: expected {SECONDS}"),
    bad("deploy_health_timeout", "0", f"deploy_health_timeout='0' is not valid: expected {SECONDS}"),
    bad("deploy_poll_interval", 0, f"deploy_poll_interval=0 is not valid: expected {SECONDS}"),
    bad("deploy_poll_interval", "600",
        f"deploy_poll_interval='600' is not valid: expected {SECONDS} and less than deploy_standby_timeout (600) "
        "and deploy_health_timeout (600)"),
    bad("deploy_poll_interval", 30,
        f"deploy_poll_interval=30 is not valid: expected {SECONDS} and less than deploy_standby_timeout (30) "
        "and deploy_health_timeout (600)", deploy_standby_timeout="30"),
    bad("deploy_suspend_processes", ["AZRebalance", "Launch"],
        f"deploy_suspend_processes=['AZRebalance', 'Launch'] is not valid: {LAUNCH}; expected {PROCESSES}"),
    bad("deploy_suspend_processes", "AZRebalance,terminate",
        f"deploy_suspend_processes='AZRebalance,terminate' is not valid: {TERMINATE}; expected {PROCESSES}"),
    bad("deploy_suspend_processes", ["AZRebalance", "Rebalance"],
        f"deploy_suspend_processes=['AZRebalance', 'Rebalance'] is not valid: 'Rebalance' is not an Auto Scaling "
        f"process; expected {PROCESSES}"),
    bad("deploy_suspend_processes", ["AZRebalance", 3],
        f"deploy_suspend_processes=['AZRebalance', 3] is not valid: 3 is not an Auto Scaling process; "
        f"expected {PROCESSES}"),
    bad("deploy_suspend_processes", 5, f"deploy_suspend_processes=5 is not valid: expected {PROCESSES}"),
    bad("deploy_keep_releases", 1, "deploy_keep_releases=1 is not valid: expected a release count of at least 2 "
                                   "(the one running and one to roll back to)"),
    bad("deploy_keep_releases", "all", "deploy_keep_releases='all' is not valid: expected a release count of at "
                                       "least 2 (the one running and one to roll back to)"),
    bad("deploy_alarms", 5, f"deploy_alarms=5 is not valid: expected {ALARMS}"),
    bad("deploy_alarms", ["web-5xx", ""], f"deploy_alarms=['web-5xx', ''] is not valid: '' is not an alarm name; "
                                          f"expected {ALARMS}"),
    bad("deploy_alarms", ["web-5xx", 3], f"deploy_alarms=['web-5xx', 3] is not valid: 3 is not an alarm name; "
                                         f"expected {ALARMS}"),
    bad("deploy_alarms", ["a\tb"], f"deploy_alarms=['a\\tb'] is not valid: 'a\\tb' is not an alarm name; "
                                   f"expected {ALARMS}"),
    bad("deploy_alarms", ["x" * 256], f"deploy_alarms=['{'x' * 75}... is not valid: '{'x' * 76}... is not an alarm "
                                      f"name; expected {ALARMS}"),
    bad("deploy_alarms", [f"a{n}" for n in range(101)],
        f"deploy_alarms=['a0', 'a1', 'a2', 'a3', 'a4', 'a5', 'a6', 'a7', 'a8', 'a9', 'a10', 'a11', 'a... "
        f"is not valid: 101 alarms; expected {ALARMS}"),
    bad("deploy_alarms_insufficient_data", "missing",
        "deploy_alarms_insufficient_data='missing' is not valid: expected one of ok, alarm"),
    bad("deploy_bake_seconds", -1, "deploy_bake_seconds=-1 is not valid: expected a number of seconds of 0 or more "
                                   "(0: no bake)"),
    bad("deploy_bake_seconds", "5m", "deploy_bake_seconds='5m' is not valid: expected a number of seconds of 0 or "
                                     "more (0: no bake)"),
    bad("deploy_canary_bake_seconds", "long",
        "deploy_canary_bake_seconds='long' is not valid: expected auto or a number of seconds of 0 or more"),
    bad("deploy_canary_bake_seconds", -5,
        "deploy_canary_bake_seconds=-5 is not valid: expected auto or a number of seconds of 0 or more"),
    bad("deploy_rollback_on_failure", "everything",
        "deploy_rollback_on_failure='everything' is not valid: expected one of batch, all"),
    bad("deploy_checkpoints", [10, 100], f"deploy_checkpoints=[10, 100] is not valid: expected {CHECKPOINTS}"),
    bad("deploy_checkpoints", "0,50", f"deploy_checkpoints='0,50' is not valid: expected {CHECKPOINTS}"),
    bad("deploy_checkpoints", "half", f"deploy_checkpoints='half' is not valid: expected {CHECKPOINTS}"),
    bad("deploy_checkpoints", 50, f"deploy_checkpoints=50 is not valid: expected {CHECKPOINTS}"),
    bad("deploy_checkpoint_wait", "operator",
        "deploy_checkpoint_wait='operator' is not valid: expected one of bake, resume"),
    bad("deploy_checkpoint_timeout", 59,
        "deploy_checkpoint_timeout=59 is not valid: expected a number of seconds of at least 60"),
    bad("deploy_strategy", "az", "deploy_strategy='az' is not valid: expected one of batches, zonal"),
    bad("deploy_zonal_monitor_seconds", "-1",
        "deploy_zonal_monitor_seconds='-1' is not valid: expected a number of seconds of 0 or more"),
    bad("deploy_zonal_min_healthy_percent", 100,
        f"deploy_zonal_min_healthy_percent=100 is not valid: expected {ZONAL_MIN}"),
    bad("deploy_zonal_min_healthy_percent", "most",
        f"deploy_zonal_min_healthy_percent='most' is not valid: expected {ZONAL_MIN}"),
]


@pytest.mark.parametrize(("given", "line"), BAD)
def test_each_bad_value_gives_its_one_line(given, line):
    settings, errors = deploy_settings.check(params(**given))
    assert [error["message"] for error in errors] == [line]
    assert "\n" not in line
    assert errors[0]["setting"] not in settings


def test_a_long_value_is_shortened_in_the_line():
    _settings, errors = deploy_settings.check(params(deploy_batch_size="x" * 500))
    assert errors[0]["message"] == f"deploy_batch_size='{'x' * 76}... is not valid: expected {BATCH}"


def test_several_bad_values_make_one_line_in_the_order_of_the_options():
    _settings, errors = deploy_settings.check(params(deploy_batch_size="lots", app_version="../x", deploy_force="?"))
    assert [e["setting"] for e in errors] == ["app_version", "deploy_batch_size", "deploy_force"]
    result = run_module("ec2fleet.fleet.deploy_settings", {"app_version": "../x", "deploy_batch_size": "lots",
                                                           "deploy_force": "?"})
    assert result["failed"] is True
    assert result["msg"] == " | ".join(e["message"] for e in errors)
    assert "\n" not in result["msg"]
    assert result["errors"][1] == {"setting": "deploy_batch_size", "value": "lots",
                                   "message": f"deploy_batch_size='lots' is not valid: expected {BATCH}"}


GOOD = [
    ("app_version", "2.1.0-rc.1+build.7", "2.1.0-rc.1+build.7"),
    ("app_version", "v" * 64, "v" * 64),
    ("app_version", 7, "7"),
    ("rollback_version", "1.0.0", "1.0.0"),
    ("rollback_version", "", None),
    ("deploy_target", "role_web:&env_prod", "role_web:&env_prod"),
    ("deploy_canary", "0", 0),
    ("deploy_canary", " 2 ", 2),
    ("deploy_batch_size", "3", 3),
    ("deploy_batch_size", 5, 5),
    ("deploy_batch_size", " 25 %", "25%"),
    ("deploy_batch_size", "007%", "7%"),
    ("deploy_batch_size", "100%", "100%"),
    ("deploy_max_az_share", "1", 1),
    ("deploy_max_az_share", "34%", "34%"),
    ("deploy_min_healthy", "0", 0),
    ("deploy_min_healthy", "0%", "0%"),
    ("deploy_min_healthy", "99%", "99%"),
    ("deploy_min_healthy", 4.0, 4),
    ("deploy_capacity", "SURGE", "surge"),
    ("deploy_capacity", "none", "none"),
    ("deploy_max_fail_percentage", "10%", 10),
    ("deploy_max_fail_percentage", "100", 100),
    ("deploy_force", "yes", True),
    ("deploy_force", "True", True),
    ("deploy_force", "1", True),
    ("deploy_force", "off", False),
    ("deploy_force", 0, False),
    ("deploy_lock_ttl", "60", 60),
    ("deploy_standby_timeout", "1200", 1200),
    ("deploy_health_timeout", 900, 900),
    ("deploy_poll_interval", "5", 5),
    ("deploy_suspend_processes", "azrebalance, ScheduledActions", ["AZRebalance", "ScheduledActions"]),
    ("deploy_suspend_processes", "[AZRebalance, HealthCheck]", ["AZRebalance", "HealthCheck"]),
    ("deploy_suspend_processes", ["AZRebalance", "AZRebalance", "InstanceRefresh"], ["AZRebalance", "InstanceRefresh"]),
    ("deploy_suspend_processes", "", []),
    ("deploy_suspend_processes", [], []),
    ("deploy_keep_releases", "2", 2),
    ("deploy_alarms", "web-5xx, web-p99", ["web-5xx", "web-p99"]),
    ("deploy_alarms", "['web-5xx', 'web-p99']", ["web-5xx", "web-p99"]),
    ("deploy_alarms", ["web 5xx, per minute", "web 5xx, per minute"], ["web 5xx, per minute"]),
    ("deploy_alarms", "", []),
    ("deploy_alarms_insufficient_data", "ALARM", "alarm"),
    ("deploy_bake_seconds", "120", 120),
    ("deploy_canary_bake_seconds", "0", 0),
    ("deploy_canary_bake_seconds", 900, 900),
    ("deploy_rollback_on_failure", "All", "all"),
    ("deploy_checkpoints", "50, 10%", [10, 50]),
    ("deploy_checkpoints", [25, "25", 75], [25, 75]),
    ("deploy_checkpoints", "[10, 50]", [10, 50]),
    ("deploy_checkpoints", [], []),
    ("deploy_checkpoint_wait", "resume", "resume"),
    ("deploy_checkpoint_timeout", "7200", 7200),
    ("deploy_strategy", "Zonal", "zonal"),
    ("deploy_zonal_monitor_seconds", 0, 0),
    ("deploy_zonal_min_healthy_percent", "34%", 34),
]


@pytest.mark.parametrize(("setting", "value", "normalized"), GOOD, ids=[f"{s}={v!r}"[:60] for s, v, _n in GOOD])
def test_good_values_are_normalized(setting, value, normalized):
    settings, errors = deploy_settings.check(params(**{setting: value}))
    assert errors == []
    assert settings[setting] == normalized
    assert type(settings[setting]) is type(normalized)


def test_defaults_through_ansible_as_strings_from_extra_vars(tmp_path):
    """What -e hands over (strings) comes back typed, in check mode too, changing nothing."""
    args = {"app_version": "2.0.0", "targets": ["web-1"], "deploy_canary": "0", "deploy_batch_size": "2",
            "deploy_force": "yes", "deploy_stage": "no", "deploy_lock_ttl": "7200", "deploy_suspend_processes": "AZRebalance,HealthCheck"}
    for check in (False, True):
        result = run_module("ec2fleet.fleet.deploy_settings", args, check=check)
        assert result.get("failed") is not True, result
        assert result["changed"] is False
        assert result["targets"] == ["web-1"]
        assert result["settings"] == {
            "app_version": "2.0.0", "deploy_target": "role_web", "deploy_canary": 0, "deploy_batch_size": 2,
            "deploy_max_az_share": "50%", "deploy_min_healthy": "50%", "deploy_capacity": "auto",
            "deploy_lifecycle_hooks": "complete",
            "deploy_max_fail_percentage": 0, "deploy_force": True, "deploy_stage": False, "deploy_lock_ttl": 7200,
            "deploy_standby_timeout": 600, "deploy_health_timeout": 600, "deploy_poll_interval": 2,
            "deploy_suspend_processes": ["AZRebalance", "HealthCheck"], "deploy_keep_releases": 3,
            "deploy_alarms": [], "deploy_alarms_insufficient_data": "ok", "deploy_bake_seconds": 0,
            "deploy_canary_bake_seconds": 0, "deploy_rollback_on_failure": "batch", "deploy_checkpoints": [],
            "deploy_checkpoint_wait": "bake", "deploy_checkpoint_timeout": 3600, "deploy_strategy": "batches",
            "deploy_zonal_monitor_seconds": 600, "deploy_zonal_min_healthy_percent": 0,
            "rollback_version": None,
        }
        assert result["msg"] == ("deploy settings valid: app_version=2.0.0, deploy_target=role_web (1 hosts), "
                                 "batches of 2 after a canary of 0")


@pytest.mark.parametrize(("given", "seconds"), [
    ({}, 0),
    ({"deploy_alarms": ["web-5xx"]}, 300),
    ({"deploy_checkpoints": "50"}, 300),
    ({"deploy_bake_seconds": "60"}, 300),
    ({"deploy_bake_seconds": 600}, 1200),
    ({"deploy_bake_seconds": 600, "deploy_canary_bake_seconds": "120"}, 120),
    ({"deploy_canary_bake_seconds": "AUTO", "deploy_alarms": "a,b"}, 300),
], ids=["nothing-watched", "alarms", "checkpoints", "short-bake", "long-bake", "explicit", "auto-typed"])
def test_the_canary_bakes_longer_than_a_batch_only_when_something_is_watched(given, seconds):
    settings, errors = deploy_settings.check(params(**given))
    assert errors == [] and settings["deploy_canary_bake_seconds"] == seconds


def test_rollback_may_leave_app_version_to_the_playbook():
    settings, errors = deploy_settings.check(params(app_version=None, app_version_required=False,
                                                    rollback_version="1.9.0"))
    assert errors == [] and settings["app_version"] is None and settings["rollback_version"] == "1.9.0"
    _settings, errors = deploy_settings.check(params(app_version="../x", app_version_required=False))
    assert [e["setting"] for e in errors] == ["app_version"]


def test_targets_not_given_are_not_checked():
    settings, errors = deploy_settings.check(params(targets=None, inventory_groups=None))
    assert errors == [] and settings["deploy_target"] == "role_web"


def _docstrings():
    found = {}
    tree = ast.parse((REPO / "plugins" / "modules" / "deploy_settings.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") in ("DOCUMENTATION", "EXAMPLES",
                                                                                   "RETURN"):
            found[node.targets[0].id] = yaml.safe_load(node.value.value)
    return found


def test_documentation_matches_the_argument_spec():
    options = _docstrings()["DOCUMENTATION"]["options"]
    assert sorted(options) == sorted(deploy_settings.ARGUMENT_SPEC)
    for name, rule in deploy_settings.ARGUMENT_SPEC.items():
        doc = options[name]
        assert doc["type"] == rule["type"], name
        assert doc.get("default") == rule.get("default"), name
        assert doc.get("elements") == rule.get("elements"), name
        assert not doc.get("required"), name


DEPLOY_VARS = yaml.safe_load((REPO / "playbooks" / "vars" / "deploy.yml").read_text())
@pytest.mark.parametrize("name", [name for name in deploy_settings.DEFAULTS if name in DEPLOY_VARS])
def test_defaults_are_those_of_the_deploy_vars(name):
    """One set of defaults: where playbooks/vars/deploy.yml sets a checked setting, the module's
    default (used when a task omits the option) is the same value."""
    assert DEPLOY_VARS[name] == deploy_settings.DEFAULTS[name]


def test_the_deploy_vars_set_the_usual_settings():
    shared = [name for name in deploy_settings.DEFAULTS if name in DEPLOY_VARS]
    assert {"deploy_batch_size", "deploy_canary", "deploy_lock_ttl", "deploy_suspend_processes"} <= set(shared)


def test_ansible_doc_renders():
    out = subprocess.run([str(BIN / "ansible-doc"), "ec2fleet.fleet.deploy_settings"], cwd=REPO,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "ERROR" not in out.stderr and "EXAMPLES:" in out.stdout and "RETURN VALUES:" in out.stdout


# --- through ansible-playbook, the way an operator meets it -------------------------------------

def recommended_task():
    """The first EXAMPLES task: the check recommended as the first task of playbooks/deploy.yml."""
    task = _docstrings()["EXAMPLES"][0]
    assert "ec2fleet.fleet.deploy_settings" in task
    return task


def run_playbook(tmp_path, *extra_vars):
    inventory = tmp_path / "fleet.ini"
    inventory.write_text("[role_web]\nweb-1\nweb-2\n[asg_web]\nweb-1\nweb-2\n[env_prod]\nweb-1\nweb-2\n"
                         "[az_us_east_1a]\nweb-1\n[az_us_east_1b]\nweb-2\n")
    playbook = [
        {"name": "Check the deploy settings", "hosts": "localhost", "gather_facts": False, "strategy": "linear",
         "vars_files": [str(REPO / "playbooks" / "vars" / "deploy.yml")], "tasks": [recommended_task()]},
        {"name": "The rest of the deploy", "hosts": "localhost", "gather_facts": False, "strategy": "linear",
         "tasks": [{"name": "Runs only after the check passed", "ansible.builtin.debug": {
             "msg": "THE-REST-RAN with batches of {{ deploy_settings.settings.deploy_batch_size }}"}}]},
    ]
    path = tmp_path / "deploy.yml"
    path.write_text(yaml.safe_dump(playbook, sort_keys=False))
    env = {key: value for key, value in os.environ.items() if not key.startswith("ANSIBLE_")}
    cmd = [str(BIN / "ansible-playbook"), "-i", str(inventory), str(path)]
    for extra in extra_vars:
        cmd += ["-e", extra]
    # cwd: the checkout, so the repo's ansible.cfg (callbacks, result format, collections path) applies.
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


def test_a_bad_batch_size_in_a_playbook_is_one_line_not_a_template_error(tmp_path):
    out = run_playbook(tmp_path, "app_version=2.0.0", "deploy_batch_size=lots")
    text = out.stdout + out.stderr
    line = f"deploy_batch_size='lots' is not valid: expected {BATCH}"
    assert out.returncode != 0, text
    assert f"[ERROR]: Task failed: Module failed: {line}\n" in text
    assert f'"msg": "{line}"' in text
    assert "Finalization of task args" not in text and "Error while resolving value" not in text
    assert "THE-REST-RAN" not in text


def test_a_pattern_matching_nothing_in_a_playbook_names_the_pattern_and_some_groups(tmp_path):
    out = run_playbook(tmp_path, "app_version=2.0.0", "deploy_target=role_wbe")
    text = out.stdout + out.stderr
    line = (f"deploy_target='role_wbe' is not valid: {NO_HOST}, such as one of its groups: role_web, asg_web, "
            "env_prod, az_us_east_1a, az_us_east_1b")
    assert out.returncode != 0, text
    assert f"[ERROR]: Task failed: Module failed: {line}\n" in text
    assert "Finalization of task args" not in text and "Error while resolving value" not in text
    assert "THE-REST-RAN" not in text


def test_good_settings_in_a_playbook_go_on(tmp_path):
    out = run_playbook(tmp_path, "app_version=2.0.0", "deploy_batch_size=50%", "deploy_force=yes")
    text = out.stdout + out.stderr
    assert out.returncode == 0, text
    assert "THE-REST-RAN with batches of 50%" in text

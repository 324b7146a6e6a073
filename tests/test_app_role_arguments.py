"""Bad role variables fail first, with a clear message, before any task touches a host."""

from __future__ import annotations

import pytest
import yaml
from app_support import REPO, run_playbook


def apply_role(tmp_path, role, role_vars, tasks_from="main"):
    playbook = tmp_path / "apply.yml"
    playbook.write_text(yaml.safe_dump([{
        "name": f"Apply {role} with bad variables", "hosts": "localhost", "gather_facts": False,
        "tasks": [{"name": "Apply", "ansible.builtin.include_role": {"name": f"ec2fleet.fleet.{role}", "tasks_from": tasks_from},
                   "vars": role_vars}],
    }]))
    # --check: should validation ever let a value through, nothing on this machine changes.
    return run_playbook(playbook, "--check")


@pytest.mark.parametrize(
    ("role", "role_vars", "message"),
    [
        ("app", {"app_artifact_source": "ftp"}, "app_artifact_source must be one of: local, s3, url"),
        ("app", {"app_keep_releases": "many"}, "app_keep_releases"),
        ("app", {"app_version": "../1.0.0"}, "app_version must be a plain version string"),
        ("app", {"app_version": "1.0.0", "app_artifact_sha256": "abc"}, "64 hex digits"),
        ("app", {"app_env": {"lower-case": "x"}}, "env names UPPER_CASE"),
        ("nginx", {"nginx_tls_enabled": "perhaps"}, "nginx_tls_enabled"),
        ("nginx", {"nginx_upstream_keepalive": "lots"}, "nginx_upstream_keepalive"),
    ],
)
def test_bad_variables_fail_clearly(tmp_path, role, role_vars, message):
    run = apply_role(tmp_path, role, role_vars)
    assert run.returncode != 0
    assert message in run.stdout, run.stdout[-2000:]
    # Nothing after the checks ran.
    assert f"TASK [{role} : Install" not in run.stdout


# The app role's entry points for a deploy (meta/argument_specs.yml has one spec each).
@pytest.mark.parametrize(
    ("tasks_from", "role_vars", "message"),
    [
        ("stage", {"app_version": "../1.0.0"}, "app_version must be a plain version string"),
        ("stage", {"app_artifact_source": "ftp"}, "app_artifact_source must be one of: local, s3, url"),
        ("activate", {"app_version": "2.0.0", "app_port": "http"}, "app_port"),
        ("activate", {"app_version": "2.0.0", "app_workers": "many"}, "app_workers"),
        ("unstage", {"app_version": "2.0.0", "app_staged_now": "perhaps"}, "app_staged_now"),
        ("prune", {"app_keep_releases": "many"}, "app_keep_releases"),
    ],
)
def test_app_entry_points_check_their_variables(tmp_path, tasks_from, role_vars, message):
    run = apply_role(tmp_path, "app", role_vars, tasks_from)
    assert run.returncode != 0
    assert message in run.stdout, run.stdout[-2000:]
    assert f"Validating arguments against arg spec '{tasks_from}'" in run.stdout
    # Nothing after the checks ran: no host task, no helper call.
    for task in ("TASK [app : Install", "TASK [app : Activate", "TASK [app : Remove", "TASK [app : Prune"):
        assert task not in run.stdout


def test_app_entry_points_have_argument_specs():
    """Every task file a deploy names with tasks_from has its own spec (and main's options exist)."""
    specs = yaml.safe_load((REPO / "roles" / "app" / "meta" / "argument_specs.yml").read_text())["argument_specs"]
    assert set(specs) == {"main", "stage", "activate", "unstage", "prune", "rollback"}
    for entry_point in specs:
        assert (REPO / "roles" / "app" / "tasks" / f"{entry_point}.yml").is_file()
    main_options = specs["main"]["options"]
    for entry_point in ("stage", "activate", "unstage", "prune"):
        for name, option in specs[entry_point]["options"].items():
            if name in main_options and name != "app_version":
                assert option == main_options[name], (entry_point, name)
    assert set(specs["stage"]["options"]) == set(main_options) - {"app_rollback_version"}

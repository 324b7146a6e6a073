"""Bad role variables fail first, with a clear message, before any task touches a host."""

from __future__ import annotations

import pytest
import yaml
from app_support import run_playbook


def apply_role(tmp_path, role, role_vars):
    playbook = tmp_path / "apply.yml"
    playbook.write_text(yaml.safe_dump([{
        "name": f"Apply {role} with bad variables", "hosts": "localhost", "gather_facts": False,
        "tasks": [{"name": "Apply", "ansible.builtin.include_role": {"name": f"ec2fleet.fleet.{role}"}, "vars": role_vars}],
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

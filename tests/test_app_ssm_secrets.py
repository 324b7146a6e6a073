"""The app role's secrets: SSM SecureString parameters looked up on the controller (emulator),
rendered into the env file template, never printed."""

from __future__ import annotations

import boto3
import pytest
import yaml
from app_support import REPO, run_playbook

SECRET = "s3cr3t-value-that-must-not-leak"


def secrets_playbook(tmp_path, parameters):
    playbook = tmp_path / "secrets.yml"
    playbook.write_text(yaml.safe_dump([{
        "name": "Resolve secrets like the app role does",
        "hosts": "localhost",
        "gather_facts": False,
        "vars": {"app_ssm_parameters": parameters, "app_env": {"SAMPLEAPP_GREETING": 'say "hi"'}},
        "tasks": [
            {"name": "Look up", "ansible.builtin.include_role":
                {"name": "ec2fleet.fleet.app", "tasks_from": "secrets", "public": True}},
            {"name": "Render the role's env file", "no_log": True, "ansible.builtin.template": {
                "src": str(REPO / "roles" / "app" / "templates" / "app.env.j2"),
                "dest": str(tmp_path / "sampleapp.env"), "mode": "0640"}},
        ],
    }]))
    return playbook


@pytest.mark.emulator
def test_secure_strings_reach_the_env_file_and_nowhere_else(aws, tmp_path):
    ssm = boto3.client("ssm")
    ssm.put_parameter(Name="/test/sampleapp/secret_key", Value=SECRET, Type="SecureString")
    ssm.put_parameter(Name="/test/sampleapp/db_user", Value="app", Type="String")
    run = run_playbook(
        secrets_playbook(tmp_path, {"SAMPLEAPP_SECRET_KEY": "/test/sampleapp/secret_key",
                                    "SAMPLEAPP_DB_USER": "/test/sampleapp/db_user"}),
        "-vv",
    )
    assert run.returncode == 0, run.stdout[-3000:]
    env = (tmp_path / "sampleapp.env").read_text().splitlines()
    assert f'SAMPLEAPP_SECRET_KEY="{SECRET}"' in env
    assert 'SAMPLEAPP_DB_USER="app"' in env
    assert 'SAMPLEAPP_GREETING="say \\"hi\\""' in env
    assert 'SAMPLEAPP_STATE_DIR="/opt/sampleapp/shared/state"' in env
    assert SECRET not in run.stdout
    assert "censored" in run.stdout  # no_log really applied


@pytest.mark.emulator
def test_missing_parameter_fails_without_leaking(aws, tmp_path):
    ssm = boto3.client("ssm")
    ssm.put_parameter(Name="/test/sampleapp/secret_key", Value=SECRET, Type="SecureString")
    run = run_playbook(secrets_playbook(tmp_path, {"SAMPLEAPP_SECRET_KEY": "/test/sampleapp/secret_key",
                                                   "SAMPLEAPP_OTHER": "/test/sampleapp/missing"}))
    assert run.returncode != 0
    assert SECRET not in run.stdout
    assert not (tmp_path / "sampleapp.env").exists()

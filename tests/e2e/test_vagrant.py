"""Vagrant: the Vagrantfile validates, and `vagrant up --provider=docker` brings the bastion
machine up from the project's base image and provisions it with site.yml (Ansible provisioner)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.docker, pytest.mark.e2e]


def vagrant(*args: str, timeout: int = 1500) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
           "VAGRANT_CHECKPOINT_DISABLE": "1", "ANSIBLE_FORCE_COLOR": "0"}
    return subprocess.run(["vagrant", *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)


def test_vagrantfile_validates():
    proc = vagrant("validate")
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_docker_provider_brings_up_and_provisions_the_bastion(base_image):
    vagrant("destroy", "-f", "bastion")
    try:
        proc = vagrant("up", "bastion", "--provider=docker")
        log = REPO / "reports" / "e2e"
        log.mkdir(parents=True, exist_ok=True)
        (log / "vagrant-up.log").write_text(proc.stdout + proc.stderr)
        assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
        # The Ansible provisioner ran site.yml on it, and the run converged without failures.
        assert "PLAY RECAP" in proc.stdout
        assert "failed=0" in proc.stdout.split("PLAY RECAP", 1)[1]
        status = vagrant("status", "bastion")
        assert "running (docker)" in status.stdout
    finally:
        vagrant("destroy", "-f", "bastion")

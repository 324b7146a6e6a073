"""Vagrant: the Vagrantfile validates. `vagrant up bastion --provider=docker` (the machine from the
project's base image, provisioned with site.yml) runs as the README writes it, in
tests/e2e/test_0_readme_commands.py."""

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

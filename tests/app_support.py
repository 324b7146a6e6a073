"""Helpers for the app/nginx tests (tests/test_app_*.py, tests/test_nginx_*.py): build release
artifacts once per session with tools/build-release, and run small playbooks on the controller
(localhost) that use the roles' task files.
"""

from __future__ import annotations

import atexit
import functools
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
HELPER = REPO / "roles" / "app" / "files" / "app-release"
_BUILD_DIR = Path(tempfile.mkdtemp(prefix="app-tests-dist-"))
atexit.register(shutil.rmtree, _BUILD_DIR, True)


@functools.cache
def build_release(version: str) -> Path:
    """dist/sampleapp-VERSION.tar.gz built by tools/build-release (once per session)."""
    subprocess.run(
        [str(REPO / "tools" / "build-release"), version, "--dist", str(_BUILD_DIR)],
        check=True, capture_output=True, text=True,
    )
    return _BUILD_DIR / f"sampleapp-{version}.tar.gz"


def run_playbook(playbook: Path, *args: str, env: dict | None = None, timeout: int = 300):
    """ansible-playbook in the repository (its ansible.cfg, roles and controller inventory)."""
    full_env = {**os.environ, "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1",
                "ANSIBLE_FORCE_COLOR": "0", **(env or {})}
    return subprocess.run(
        ["ansible-playbook", str(playbook), *args], cwd=REPO, env=full_env,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=timeout,
    )

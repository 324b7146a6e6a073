"""playbooks/deploy.yml when targets do not answer: Ansible goes on to the next play even with
any_errors_fatal, so the deploy itself must stop before the lock with one line naming the targets
that did not finish preflight (it failed on a template error instead, in a CI run where a banned
controller reached no host)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def test_unreachable_targets_stop_the_deploy_before_the_lock_with_one_line(tmp_path):
    inventory = tmp_path / "fleet.ini"
    # Port 9 on loopback: nothing listens, so SSH is refused at once (unreachable).
    inventory.write_text("[role_web]\nweb-1\nweb-2\n[role_web:vars]\nansible_host=127.0.0.1\nansible_port=9\n"
                         "site_env=test\n")
    env = {key: value for key, value in os.environ.items() if not key.startswith("ANSIBLE_")}
    env["ANSIBLE_SSH_RETRIES"] = "0"  # ansible.cfg retries with a backoff; refused is final here
    out = subprocess.run([str(BIN / "ansible-playbook"), "-i", str(inventory), "playbooks/deploy.yml",
                          "-e", "app_version=2.0.0"], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    text = out.stdout + out.stderr
    assert out.returncode != 0, text
    line = ("Preflight did not finish on 2 of 2 target(s) (web-1, web-2: unreachable or failed, see above); "
            "nothing was touched")
    assert f'"msg": "{line}"' in text, text[-3000:]
    assert "Error while resolving value" not in text and "deploy_facts" not in text
    assert "Take the deploy lock" not in text

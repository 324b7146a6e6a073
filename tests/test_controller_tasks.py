"""Tasks that run on the controller (delegate_to: localhost) in roles and included task files
never inherit the play's become: the play escalates on the hosts, while on an operator's laptop
sudo would prompt or fail. (Ansible skips become when the controller already runs as root, as CI
does, so only this check catches it.)"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
TASK_FILES = sorted([*REPO.glob("roles/*/tasks/*.yml"), *REPO.glob("roles/*/handlers/*.yml"),
                     *REPO.glob("playbooks/tasks/*.yml")])


def controller_tasks_with_become(tasks, inherited_become=None):
    """Names of tasks delegated to localhost whose become is not explicitly false."""
    found = []
    for task in tasks or []:
        if not isinstance(task, dict):
            continue
        apply = (task.get("args") or {}).get("apply") or {}
        become = task.get("become", apply.get("become", inherited_become))
        for key in ("block", "rescue", "always"):
            found += controller_tasks_with_become(task.get(key), become)
        if "localhost" in (task.get("delegate_to"), apply.get("delegate_to")) and become is not False:
            found.append(task.get("name", "<unnamed>"))
    return found


def test_the_check_sees_a_controller_task_that_would_sudo():
    tasks = [{"name": "fetch", "ansible.builtin.stat": {"path": "/x"}, "delegate_to": "localhost"},
             {"name": "ok", "ansible.builtin.stat": {"path": "/x"}, "delegate_to": "localhost", "become": False},
             {"block": [{"name": "inner", "delegate_to": "localhost"}], "become": False}]
    assert controller_tasks_with_become(tasks) == ["fetch"]


def test_task_files_are_found():
    # An empty parametrisation below would run no test at all.
    assert TASK_FILES


@pytest.mark.parametrize("path", TASK_FILES, ids=lambda p: str(p.relative_to(REPO)))
def test_controller_tasks_do_not_become(path):
    assert controller_tasks_with_become(yaml.safe_load(path.read_text())) == []

"""ARA (docs/ara.md): its callback records real runs of the project's Ansible, and only when enabled.

Each run uses the project's ansible.cfg (Mitogen's linear strategy by default, and once on the
stock linear strategy) with ARA's data directory in tmp_path, and is read back through the `ara`
CLI as an operator would. No fleet: the plays run on localhost.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent

PLAYBOOK = """\
- name: ARA records this run
  hosts: localhost
  gather_facts: false
  tasks:
    - name: Make a change
      ansible.builtin.command: "true"
      changed_when: true
    - name: Loop over items
      ansible.builtin.debug:
        msg: "item {{ item }}"
      loop: [1, 2]
    - name: Fail and be ignored
      ansible.builtin.command: "false"
      changed_when: false
      ignore_errors: true
"""
TASKS = ["Make a change", "Loop over items", "Fail and be ignored"]


def ara_callback_dir() -> str:
    return subprocess.run([sys.executable, "-m", "ara.setup.callback_plugins"], check=True,
                          capture_output=True, text=True).stdout.strip()


def environment(base: Path, record: bool, **extra: str) -> dict[str, str]:
    """The project's Ansible settings; ARA's files under `base`; its callback only if `record`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANSIBLE_", "ARA_"))}
    env.update(
        PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}",
        ANSIBLE_CONFIG=str(REPO / "ansible.cfg"),
        ANSIBLE_NOCOLOR="1",
        ARA_BASE_DIR=str(base),  # settings.yaml goes there too: nothing in ~/.ara
        ARA_DATABASE_NAME=str(base / "ansible.sqlite"),
        **extra,
    )
    if record:
        # As docs/ara.md: the variable replaces ansible.cfg's callback_plugins, so keep ours first.
        env["ANSIBLE_CALLBACK_PLUGINS"] = ara_callback_dir()
    return env


def run(cmd: list[str], env: dict[str, str]) -> str:
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"{cmd} exited {proc.returncode}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout


def ara(env: dict[str, str], *args: str):
    return json.loads(run([str(BIN / "ara"), *args, "-f", "json"], env))


def play(tmp_path: Path, env: dict[str, str]) -> tuple[Path, str]:
    playbook = tmp_path / "record.yml"
    playbook.write_text(PLAYBOOK)
    out = run([str(BIN / "ansible-playbook"), "-i", "inventory/controller.yml", str(playbook)], env)
    assert "localhost" in out and "failed=0" in out and "ignored=1" in out, out
    return playbook, out


@pytest.mark.parametrize("strategy", ["mitogen_linear", "linear"])
def test_playbook_run_is_recorded_and_read_back(tmp_path, strategy):
    base = tmp_path / "ara"
    # mitogen_linear is ansible.cfg's default: left unset, as an operator runs it.
    env = environment(base, record=True, **({} if strategy == "mitogen_linear" else {"ANSIBLE_STRATEGY": "linear"}))
    playbook, _ = play(tmp_path, env)
    assert (base / "ansible.sqlite").is_file()

    [book] = ara(env, "playbook", "list", "--long")
    assert book["status"] == "completed"
    assert book["path"] == str(playbook)
    assert (book["tasks"], book["results"], book["hosts"]) == (3, 3, 1)

    tasks = ara(env, "task", "list", "--playbook", str(book["id"]))
    assert sorted(t["name"] for t in tasks) == sorted(TASKS)
    assert {t["status"] for t in tasks} == {"completed"}
    task_name = {t["id"]: t["name"] for t in tasks}

    # `ara result list` leaves out results with ignore_errors unless asked (--ignore-errors).
    results = ara(env, "result", "list", "--playbook", str(book["id"]), "--long")
    status = {task_name[r["task"]]: (r["status"], r["changed"]) for r in results}
    assert status == {"Make a change": ("changed", True), "Loop over items": ("ok", False)}
    [ignored] = ara(env, "result", "list", "--playbook", str(book["id"]), "--long", "--ignore-errors")
    assert (task_name[ignored["task"]], ignored["status"], ignored["ignore_errors"]) == \
        ("Fail and be ignored", "ignored", True)

    # The loop is one result per host, each item's outcome in its content.
    [loop] = [r for r in results if task_name[r["task"]] == "Loop over items"]
    shown = ara(env, "result", "show", str(loop["id"]), "--with-content")
    assert [item["msg"] for item in shown["content"]["results"]] == ["item 1", "item 2"]


def test_nothing_is_recorded_unless_the_callback_is_enabled(tmp_path):
    base = tmp_path / "ara"
    env = environment(base, record=False)
    _, out = play(tmp_path, env)
    assert not base.exists(), sorted(p.name for p in base.iterdir())
    assert "[ara]" not in out


def test_ad_hoc_command_is_recorded_when_callbacks_load_for_it(tmp_path):
    """docs/ara.md's example: `ansible` loads callbacks only with ANSIBLE_LOAD_CALLBACK_PLUGINS."""
    base = tmp_path / "ara"
    env = environment(base, record=True)
    run([str(BIN / "ansible"), "localhost", "-m", "ansible.builtin.ping"], env)
    assert not base.exists(), "ansible ad-hoc loaded callbacks without ANSIBLE_LOAD_CALLBACK_PLUGINS"
    env["ANSIBLE_LOAD_CALLBACK_PLUGINS"] = "true"
    run([str(BIN / "ansible"), "localhost", "-m", "ansible.builtin.ping"], env)
    [book] = ara(env, "playbook", "list", "--long")
    assert (book["status"], book["path"], book["results"]) == ("completed", "Ad-Hoc: ansible.builtin.ping", 1)

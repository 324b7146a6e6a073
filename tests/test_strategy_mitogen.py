"""The project's default strategy (ansible.cfg: mitogen_linear, plugins/strategy/; the setting
itself is checked in test_ansible_cfg.py): it really runs tasks through Mitogen, every playbook
reaches fleet hosts over stock SSH before a Mitogen play touches them, and without the mitogen
package a run stops with a message that says what to do."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
PLAYBOOKS = REPO / "playbooks"
BIN = Path(sys.executable).parent

PLAY = r"""
- name: Two tasks, each reporting the process its command was started from
  hosts: localhost
  gather_facts: false
  tasks:
    - name: First task
      ansible.builtin.command: cat /proc/self/status
      register: first
      changed_when: false
    - name: Second task
      ansible.builtin.command: cat /proc/self/status
      register: second
      changed_when: false
    - name: Report both parents
      ansible.builtin.debug:
        msg: "{{ [first.stdout, second.stdout] | map('regex_search', 'PPid:[ \t]+[0-9]+') | list }}"
"""


def project_env(**extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    env.update(ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), ANSIBLE_STDOUT_CALLBACK="ansible.builtin.json",
               PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}", **extra)
    return env


def parents_of_two_tasks(tmp_path, **env) -> list:
    playbook = tmp_path / "play.yml"
    playbook.write_text(PLAY)
    proc = subprocess.run([str(BIN / "ansible-playbook"), str(playbook)], cwd=REPO, env=project_env(**env),
                          capture_output=True, text=True, check=True)
    # The JSON document first; the project's timing callbacks print after it.
    result, _ = json.JSONDecoder().raw_decode(proc.stdout[proc.stdout.index("{"):])
    return result["plays"][0]["tasks"][-1]["hosts"]["localhost"]["msg"]


def test_playbooks_name_the_control_path_so_mitogen_shares_the_connections():
    ssh_vars = yaml.safe_load((PLAYBOOKS / "group_vars" / "all" / "ssh.yml").read_text())
    # One socket per local host, remote host, port and user (%C), in a directory every Ansible
    # command creates (ssh cannot create a missing one and then fails the connection).
    assert ssh_vars["ansible_ssh_extra_args"].split() == ["-o", "ControlPath=~/.ansible/tmp/cp-%C"]


def test_tasks_run_in_one_persistent_interpreter_under_mitogen(tmp_path):
    # Stock Ansible starts a new Python process per task, so each command has another parent;
    # Mitogen runs every task of a host in one long-lived interpreter.
    mitogen = parents_of_two_tasks(tmp_path)
    assert all(mitogen) and mitogen[0] == mitogen[1], mitogen
    stock = parents_of_two_tasks(tmp_path, ANSIBLE_STRATEGY="linear")
    assert all(stock) and stock[0] != stock[1], stock


def test_missing_mitogen_stops_the_run_with_what_to_do(tmp_path):
    # A package of that name that fails to import, first on the path: as if mitogen were absent.
    shadow = tmp_path / "shadow" / "ansible_mitogen"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text('raise ImportError("No module named ansible_mitogen")\n')
    proc = subprocess.run([str(BIN / "ansible"), "localhost", "-m", "ansible.builtin.ping"], cwd=REPO,
                          env=project_env(PYTHONPATH=str(shadow.parent)), capture_output=True, text=True)
    assert proc.returncode != 0
    assert "strategy mitogen_linear needs the 'mitogen' Python package" in proc.stderr
    assert "ANSIBLE_STRATEGY=linear" in proc.stderr


def executed_plays(playbook: Path):
    """The plays of a playbook in the order they run, imports expanded: (file, play)."""
    for entry in yaml.safe_load(playbook.read_text()):
        imported = entry.get("ansible.builtin.import_playbook") or entry.get("import_playbook")
        if imported:
            yield from executed_plays(playbook.parent / imported)
        else:
            yield playbook.name, entry


def touches_fleet_hosts(play) -> bool:
    return str(play.get("hosts")) not in ("localhost", "127.0.0.1")


@pytest.mark.parametrize("playbook", sorted(p.name for p in PLAYBOOKS.glob("*.yml")))
def test_no_mitogen_play_reaches_a_host_before_reach_yml(playbook):
    reached = False
    for source, play in executed_plays(PLAYBOOKS / playbook):
        if source == "reach.yml":
            # reach.yml meets the bastion first, then every other host, both on stock SSH.
            assert play.get("strategy") == "linear" and play["hosts"] in ("bastion", "all:!localhost:!bastion")
            reached = reached or play["hosts"] != "bastion"
        elif touches_fleet_hosts(play) and play.get("strategy") != "linear":
            assert reached, f"{playbook}: play {play['name']!r} ({source}) runs on Mitogen before reach.yml"


def test_reach_yml_is_what_the_fleet_playbooks_start_with():
    # The check above must have something to check: these run Mitogen plays on fleet hosts.
    for playbook in ("site.yml", "common.yml", "web.yml", "agents.yml", "bastion.yml"):
        sources = [source for source, _ in executed_plays(PLAYBOOKS / playbook)]
        assert sources[0] == "reach.yml", (playbook, sources)

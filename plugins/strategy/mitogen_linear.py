# Copyright: the ec2-fleet project
# Apache License 2.0
"""Mitogen's linear strategy, loaded from the installed mitogen package.

Mitogen ships its strategy plugins inside its Python package, so pointing ``strategy_plugins`` at
them would tie ansible.cfg to one virtualenv's path. This file makes the plugin findable from the
repo (``strategy_plugins = ./plugins/strategy``) and imports Mitogen under its canonical module
name, as Mitogen's own proxy module does, so its types are loaded once.
"""

from __future__ import annotations

DOCUMENTATION = r"""
name: mitogen_linear
short_description: Mitogen's linear strategy, loaded from the installed mitogen package
description:
  - Runs tasks host by host in lock-step like C(ansible.builtin.linear), over Mitogen's persistent
    connections (one Python interpreter per host for the whole run, no per-task module upload).
  - Needs the C(mitogen) Python package (a runtime dependency of this project).
author: ec2-fleet contributors
"""

from ansible.errors import AnsibleError

try:
    from ansible_mitogen.plugins.strategy.mitogen_linear import StrategyModule  # noqa: F401  (the plugin)
except ImportError as exc:
    raise AnsibleError(
        "strategy mitogen_linear needs the 'mitogen' Python package in the interpreter that runs "
        "ansible-playbook (install the project: pip install -e . or tools/bootstrap), or run with "
        f"ANSIBLE_STRATEGY=linear for stock Ansible connections: {exc}"
    ) from exc

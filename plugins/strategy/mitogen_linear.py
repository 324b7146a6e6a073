# Copyright: the ec2-fleet project
# Apache License 2.0
"""Mitogen's linear strategy, loaded from the installed mitogen package.

Mitogen ships its strategy plugins inside its Python package, so pointing ``strategy_plugins`` at
them would tie ansible.cfg to one virtualenv's path. This file makes the plugin findable in the
collection (``ec2fleet.fleet.mitogen_linear``) and imports Mitogen under its canonical module
name, as Mitogen's own proxy module does, so its types are loaded once. Without Mitogen installed
the module still imports (ansible-doc, ansible-test); choosing the strategy then fails in one line.
"""

from __future__ import annotations

DOCUMENTATION = r"""
name: mitogen_linear
short_description: Mitogen's linear strategy, loaded from the installed mitogen package
description:
  - Runs tasks host by host in lock-step like C(ansible.builtin.linear), over Mitogen's persistent
    connections (one Python interpreter per host for the whole run, no per-task module upload).
  - Needs the C(mitogen) Python package (a runtime dependency of this project).
author: ec2-fleet project (!UNKNOWN)
"""

from ansible.errors import AnsibleError

try:
    # Re-exported: Mitogen's class is this plugin.
    from ansible_mitogen.plugins.strategy.mitogen_linear import StrategyModule  # pylint: disable=unused-import
except ImportError as exc:
    _MITOGEN_IMPORT_ERROR = str(exc)
    from ansible.plugins.strategy.linear import StrategyModule as _Linear

    class StrategyModule(_Linear):  # type: ignore[no-redef]
        """Stands where Mitogen's strategy would be, to say what is missing when it is chosen."""

        def __init__(self, *args, **kwargs):
            raise AnsibleError(
                "strategy mitogen_linear needs the 'mitogen' Python package in the interpreter that runs "
                "ansible-playbook (install the project: pip install -e . or tools/bootstrap), or run with "
                f"ANSIBLE_STRATEGY=linear for stock Ansible connections: {_MITOGEN_IMPORT_ERROR}"
            )

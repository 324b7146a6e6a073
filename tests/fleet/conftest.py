"""Fleet smoke tests run against a live fleet (local or real) through testinfra's ansible backend
and the ec2_fleet inventory:

    tools/fleet smoke                                        # the local fleet
    tools/fleet smoke --inventory inventory/production.ec2_fleet.yml

which runs: pytest tests/fleet --hosts 'ansible://all' --ansible-inventory <file>.
They are not collected by the default pytest run (they need a fleet)."""

import pytest

from ec2fleet.ops import plain


@pytest.fixture
def groups(host) -> list[str]:
    """The host's inventory groups (bastion, role_web, asg_web, env_<env>, az_<zone>...)."""
    return host.ansible.get_variables().get("group_names", [])


# Compatibility shim: ansible-core 2.19's `ansible-inventory --list` marks strings from an
# inventory plugin as {"__ansible_unsafe": "..."}, and testinfra 10.2.2's ansible backend expects
# plain strings. Unwrap them (ec2fleet.ops.plain) where testinfra reads the inventory.
def _patch_testinfra_inventory():
    from testinfra.utils import ansible_runner

    original = ansible_runner.get_ansible_inventory
    if getattr(original, "__ec2fleet_unwrapped__", False):
        return

    def get_ansible_inventory(*args, **kwargs):
        return plain(original(*args, **kwargs))

    get_ansible_inventory.__ec2fleet_unwrapped__ = True
    ansible_runner.get_ansible_inventory = get_ansible_inventory


_patch_testinfra_inventory()

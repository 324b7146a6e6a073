"""The two ansible-core internals ec2_fleet relies on for speed, checked against the installed
ansible-core. If one of these fails after an upgrade, core changed underneath the plugin: the
plugin falls back to the public path at run time (slower, still right); fix or drop the hook."""

from __future__ import annotations

import inspect

import pytest
from ansible.inventory.data import InventoryData
from ansible.inventory.host import Host
from ansible.parsing.dataloader import DataLoader
from ansible.plugins.inventory import BaseInventoryPlugin, Constructable
from ansible.plugins.loader import inventory_loader
from ansible.template import trust_as_template
from ansible_collections.ec2fleet.fleet.plugins.inventory import ec2_fleet

HOSTVARS = {
    "ec2_instance_id": "i-0123456789abcdef0",
    "ec2_tags": {"Name": "web-0001", "Role": "web", "Env": "prod", "with space": "x", "items": "a key named like a dict method"},
    "ec2_security_group_ids": ["sg-1", "sg-2"],
    "placement": {"region": "us-east-1", "nested": {"depth": 3}},
    "asg_name": None,
    "ec2_is_bastion": False,
    "count": 7,
}


@pytest.fixture
def plugin(tmp_path):
    """The plugin set up as parse() sets it up (loader, templar, extra vars), without AWS."""
    source = tmp_path / "core.ec2_fleet.yml"
    source.write_text("plugin: ec2fleet.fleet.ec2_fleet\n")
    instance = inventory_loader.get("ec2fleet.fleet.ec2_fleet")
    BaseInventoryPlugin.parse(instance, InventoryData(), DataLoader(), str(source))
    instance.set_options(direct={"plugin": "ec2fleet.fleet.ec2_fleet"})
    return instance


# -- hook 1: the _compose override ----------------------------------------------------------

def test_core_compose_signature_is_the_one_the_override_was_verified_on():
    assert ec2_fleet.core_compose_is_as_verified(), (
        f"Constructable._compose is now {inspect.signature(Constructable._compose)}: ec2_fleet's override "
        "is disabled at run time; re-verify plain_path_value against the new core"
    )


# (_add_host_to_composed_groups evaluates conditionals with the templar directly: not hooked.)
@pytest.mark.parametrize("helper", ["_set_composite_vars", "_add_host_to_keyed_groups"])
def test_constructed_helpers_still_go_through_compose(helper):
    source = inspect.getsource(getattr(Constructable, helper))
    assert "self._compose(" in source, f"Constructable.{helper} no longer calls self._compose: the fast path is dead code"


PLAIN = [
    "ec2_tags.Role",
    "ec2_tags['Env']",
    'ec2_tags["with space"]',
    " placement.nested.depth ",
    "placement['nested']['depth']",
    "ec2_security_group_ids",
    "asg_name",
    "ec2_is_bastion",
    "count",
    "ec2_tags",
]
TEMPLATED = [
    "ec2_tags.Role | upper",
    "ec2_tags.keys() | list | sort",  # a dict attribute, not a key
    "asg_name ~ '-' ~ count",
    "true",
    "count + 1",
]


@pytest.mark.parametrize("expression", PLAIN + TEMPLATED)
def test_override_gives_what_core_gives(plugin, expression):
    # Expressions from an inventory file reach _compose trusted (_read_config_data loads it so).
    expression = trust_as_template(expression)
    assert plugin._compose(expression, HOSTVARS) == Constructable._compose(plugin, expression, HOSTVARS)


@pytest.mark.parametrize("expression", PLAIN)
def test_plain_paths_take_the_fast_path(expression):
    assert ec2_fleet.plain_path_value(expression, HOSTVARS) is not ec2_fleet._NOT_PLAIN


@pytest.mark.parametrize("expression", [*TEMPLATED, "ec2_tags.Missing", "no_such_var", "ec2_tags.Role.deeper", "ec2_tags.items"])
def test_everything_else_goes_to_the_templar(expression):
    assert ec2_fleet.plain_path_value(expression, HOSTVARS) is ec2_fleet._NOT_PLAIN


@pytest.mark.parametrize("expression", ["ec2_tags.Missing", "no_such_var"])
def test_unresolvable_paths_fail_as_core_fails(plugin, expression):
    expression = trust_as_template(expression)
    with pytest.raises(Exception) as core:
        Constructable._compose(plugin, expression, HOSTVARS)
    with pytest.raises(type(core.value)):
        plugin._compose(expression, HOSTVARS)


def test_use_extra_vars_lets_extra_vars_win_as_in_core(plugin):
    plugin.set_options(direct={"plugin": "ec2fleet.fleet.ec2_fleet", "use_extra_vars": True})
    plugin._vars = {"ec2_tags": {"Role": "from-extra-vars"}}
    expression = trust_as_template("ec2_tags.Role")
    assert plugin._compose(expression, HOSTVARS) == "from-extra-vars"
    assert Constructable._compose(plugin, expression, HOSTVARS) == "from-extra-vars"


# -- hook 2: many host vars at once ---------------------------------------------------------

def _public(hostvars, before=None):
    inventory = InventoryData()
    inventory.add_host("h")
    for key, value in (before or {}).items():
        inventory.set_variable("h", key, value)
    for key, value in hostvars.items():
        inventory.set_variable("h", key, value)
    return inventory.get_host("h")


def _fast(hostvars, before=None):
    inventory = InventoryData()
    inventory.add_host("h")
    for key, value in (before or {}).items():
        inventory.set_variable("h", key, value)
    ec2_fleet.set_host_vars(inventory, "h", hostvars)
    return inventory.get_host("h")


def test_host_vars_are_still_a_plain_dict():
    inventory = InventoryData()
    inventory.add_host("h")
    host = inventory.get_host("h")
    assert ec2_fleet._host_vars_are_a_dict(host), (
        f"Host.vars is now {type(getattr(host, 'vars', None)).__name__}: set_host_vars takes the public path"
    )
    host.vars["probe"] = 1
    assert host.get_vars()["probe"] == 1, "Host.get_vars no longer reads Host.vars"


def test_fast_path_gives_what_set_variable_gives():
    assert _fast(HOSTVARS).get_vars() == _public(HOSTVARS).get_vars()


def test_a_variable_already_set_is_handled_as_set_variable_handles_it():
    # set_variable merges two mappings by hash_behaviour; the fast path leaves that to it.
    before = {"ec2_tags": {"Team": "a"}, "count": 1}
    assert _fast(HOSTVARS, before).get_vars() == _public(HOSTVARS, before).get_vars()


def test_invalid_names_take_the_public_path(monkeypatch):
    calls = []
    monkeypatch.setattr(InventoryData, "set_variable", lambda self, *args: calls.append(args))
    inventory = InventoryData()
    inventory.hosts["h"] = Host("h")
    ec2_fleet.set_host_vars(inventory, "h", {"fine": 1, "not-valid": 2})
    assert [name for _, name, _ in calls] == ["fine", "not-valid"]

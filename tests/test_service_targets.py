"""The service_targets filter: only what service_state needs of each host reaches its arguments."""

from __future__ import annotations

import pytest
from ansible.errors import AnsibleFilterError
from ansible_collections.ec2fleet.fleet.plugins.filter.service_targets import service_targets


def test_only_the_instance_its_group_and_target_groups_pass():
    hosts = [
        {"inventory_hostname": "web-1", "ec2_instance_id": "i-1", "asg_name": "web", "target_group_arns": ["arn:tg/a"],
         "vault_secret": "hunter2", "ansible_host": "10.0.0.1"},
        {"inventory_hostname": "solo", "ec2_instance_id": "i-2", "target_group_arns": ["arn:tg/b"]},
        {"inventory_hostname": "bare", "ec2_instance_id": "i-3", "asg_name": ""},
    ]
    assert service_targets(hosts) == [
        {"instance_id": "i-1", "asg_name": "web", "target_group_arns": ["arn:tg/a"]},
        {"instance_id": "i-2", "asg_name": None, "target_group_arns": ["arn:tg/b"]},
        {"instance_id": "i-3", "asg_name": None, "target_group_arns": []},
    ]
    assert "hunter2" not in repr(service_targets(hosts))


def test_a_host_without_an_instance_is_named():
    with pytest.raises(AnsibleFilterError, match="host localhost has no ec2_instance_id"):
        service_targets([{"inventory_hostname": "localhost"}])

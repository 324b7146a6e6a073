"""ec2fleet.fleet.instance_host_keys: a new instance's SSH host keys from its console output
(what cloud-init prints at first boot), read through the EC2 API; the emulator serves the console
the local fleet writes (ec2fleet/moto_server.py), moto's sample text otherwise."""

from __future__ import annotations

import pytest
from ansible_collections.ec2fleet.fleet.plugins.modules.instance_host_keys import console_keys
from deploy_support import client, run_module
from inventory_fleet import AMI

ED = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHostKeyOfThisInstance0000000000000000000"
ECDSA = "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBExample="
CONSOLE = f"""[   10.1] cloud-init[512]: Cloud-init v. 22.4.2 running 'modules:final'
ec2:
ec2: #############################################################
ec2: -----BEGIN SSH HOST KEY FINGERPRINTS-----
ec2: 256 SHA256:abc root@ip-10-0-1-5 (ED25519)
ec2: -----END SSH HOST KEY FINGERPRINTS-----
-----BEGIN SSH HOST KEY KEYS-----
{ECDSA} root@ip-10-0-1-5
{ED} root@ip-10-0-1-5
-----END SSH HOST KEY KEYS-----
"""


def test_keys_between_the_markers_without_comments_or_prefixes():
    assert console_keys(CONSOLE) == [ECDSA, ED]
    prefixed = CONSOLE.replace(f"\n{ED}", f"\n[   12.3] cloud-init[1]: {ED}")
    assert console_keys(prefixed) == [ECDSA, ED]
    assert console_keys("Linux version 6.1 ...\nno keys here\n") == []


def test_the_last_block_wins_after_a_reboot():
    other = ED.replace("HostKeyOfThisInstance", "AnotherKeyAfterRebuild")
    assert console_keys(CONSOLE + CONSOLE.replace(ED, other).replace(ECDSA + " root@ip-10-0-1-5\n", "")) == [other]


@pytest.fixture
def instance(aws):
    return client("ec2").run_instances(ImageId=AMI, MinCount=1, MaxCount=1, InstanceType="t3.micro")[
        "Instances"][0]["InstanceId"]


@pytest.mark.emulator
def test_the_module_reads_the_key_from_the_console(aws, instance):
    (aws.console_dir / instance).write_text(CONSOLE)
    result = run_module("ec2fleet.fleet.instance_host_keys", {"instance_id": instance})
    assert result["changed"] is False and result["key"] == ED and result["keys"] == [ECDSA, ED]
    ecdsa = run_module("ec2fleet.fleet.instance_host_keys", {"instance_id": instance, "key_type": "ecdsa-sha2-nistp256"})
    assert ecdsa["key"] == ECDSA


@pytest.mark.emulator
def test_a_console_without_keys_fails_in_one_line(aws, instance):
    result = run_module("ec2fleet.fleet.instance_host_keys", {"instance_id": instance, "timeout": 0})
    assert result["failed"] is True
    assert result["msg"].startswith(f"the console output of {instance} shows no SSH host keys, no ssh-ed25519 key")
    (aws.console_dir / instance).write_text(CONSOLE.replace(ED, ""))
    only = run_module("ec2fleet.fleet.instance_host_keys", {"instance_id": instance, "timeout": 0})
    assert "shows only ecdsa-sha2-nistp256, no ssh-ed25519 key" in only["msg"]

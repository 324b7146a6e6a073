#!/usr/bin/python
"""Ansible module: the SSH host keys an EC2 instance printed on its console at first boot, read
through the EC2 API: how a new instance's key is known before the first SSH connection."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: instance_host_keys
short_description: Read the SSH host keys an EC2 instance printed on its console at first boot
description:
  - cloud-init prints the instance's SSH host public keys on the serial console at first boot,
    between C(-----BEGIN SSH HOST KEY KEYS-----) and C(-----END SSH HOST KEY KEYS-----). This
    module reads them with EC2 C(GetConsoleOutput), an authenticated AWS API call, so a host
    met for the first time is checked against its real key instead of being trusted on first use
    (C(playbooks/reach.yml) pins it for one run and installs the host certificate over that
    connection).
  - The console output can take a few minutes to appear after launch; the module waits up to
    O(timeout) seconds for the keys.
  - Changes nothing; supports check mode.
version_added: "1.0.0"
author: ec2-fleet project (!UNKNOWN)
extends_documentation_fragment:
  - ec2fleet.fleet.aws
  - ec2fleet.fleet.aws.retries
options:
  instance_id:
    description: The instance.
    type: str
    required: true
  key_type:
    description: The key type RV(key) returns.
    type: str
    default: ssh-ed25519
    choices: [ssh-ed25519, ecdsa-sha2-nistp256, ecdsa-sha2-nistp384, ecdsa-sha2-nistp521, ssh-rsa]
  timeout:
    description: Seconds to wait for the keys to appear in the console output (0 reads once).
    type: int
    default: 180
  poll_interval:
    description: Seconds between reads while waiting.
    type: int
    default: 5
notes:
  - Needs C(ec2:GetConsoleOutput) on the instance.
  - cloud-init's C(ssh_key_console_blacklist) must not hide the key type asked for (Debian's and
    Amazon Linux's images print ed25519 keys by default).
"""

EXAMPLES = r"""
- name: Read the key a new instance printed at first boot
  ec2fleet.fleet.instance_host_keys:
    instance_id: "{{ ec2_instance_id }}"
    region: "{{ ec2_region }}"
  delegate_to: localhost
  register: console_keys
# console_keys.key: "ssh-ed25519 AAAAC3..."
"""

RETURN = r"""
key:
  description: The host public key of O(key_type) (type and base64, no comment).
  returned: success
  type: str
keys:
  description: Every host public key the console shows, in the order printed.
  returned: always
  type: list
  elements: str
"""

import re
import time

from ansible_collections.ec2fleet.fleet.plugins.module_utils.aws import AwsCalls, FleetAWSError
from ansible_collections.ec2fleet.fleet.plugins.module_utils.deploy import argument_spec, run_module

BEGIN = "-----BEGIN SSH HOST KEY KEYS-----"
END = "-----END SSH HOST KEY KEYS-----"
KEY = re.compile(r"\b((?:ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp(?:256|384|521)) [A-Za-z0-9+/]+=*)")


def console_keys(output: str) -> list[str]:
    """The host keys between cloud-init's markers (the last block: a reboot prints it again).
    Lines may carry prefixes (``ec2:``, kernel timestamps); only the key type and base64 count."""
    blocks = output.split(BEGIN)[1:]
    if not blocks:
        return []
    block = blocks[-1].split(END)[0]
    return list(dict.fromkeys(match.group(1) for line in block.splitlines() if (match := KEY.search(line))))


def run(module):
    params = module.params
    aws = AwsCalls(params)
    iid = params["instance_id"]
    deadline = time.monotonic() + max(0, params["timeout"])
    while True:
        answer = aws.call("ec2", "get_console_output", f"read the console output of {iid}", InstanceId=iid)
        keys = console_keys(answer.get("Output") or "")
        wanted = [k for k in keys if k.split()[0] == params["key_type"]]
        if wanted:
            return dict(changed=False, key=wanted[-1], keys=keys)
        if time.monotonic() >= deadline:
            found = f"only {', '.join(k.split()[0] for k in keys)}" if keys else "no SSH host keys"
            raise FleetAWSError(
                f"the console output of {iid} shows {found}, no {params['key_type']} key "
                f"(waited {params['timeout']}s): cloud-init prints them at first boot; without them the "
                f"host can only be trusted by a key or certificate added to known_hosts by hand")
        time.sleep(max(1, params["poll_interval"]))


ARGUMENT_SPEC = argument_spec(
    instance_id={"type": "str", "required": True},
    key_type={"type": "str", "default": "ssh-ed25519",
              "choices": ["ssh-ed25519", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521", "ssh-rsa"]},
    timeout={"type": "int", "default": 180},
    poll_interval={"type": "int", "default": 5},
)


def main():
    run_module(run, ARGUMENT_SPEC)


if __name__ == "__main__":
    main()

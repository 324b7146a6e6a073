"""playbooks/reach.yml with host certificates, against a real sshd (a systemd container from the
project's base image, booted by the local fleet's cloud-init stand-in) and the emulator's console
output: a new instance is met through the key its console printed, never trusted on first use,
and certified; later runs check the certificate alone; a forged key is refused; an instance
replaced at the same address is reached with the known_hosts untouched.

The host is reached the way the local fleet reaches its bastion: 127.0.0.1 and a published port,
checked under its instance id (HostKeyAlias), with a known_hosts holding only the CA's line.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import yaml
from ansible_collections.ec2fleet.fleet.plugins.module_utils import ssh_ca
from deploy_support import client
from inventory_fleet import AMI

from ec2fleet import emulator, known_hosts
from ec2fleet.localfleet import containers

pytestmark = [pytest.mark.emulator, pytest.mark.docker]

REPO = Path(__file__).resolve().parent.parent
PLAYBOOK = Path(sys.executable).with_name("ansible-playbook")


def keygen(path: Path) -> str:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", path.name, "-f", str(path)], check=True)
    return path.with_name(f"{path.name}.pub").read_text().strip()


class World:
    def __init__(self, aws, image: str, tmp: Path):
        self.aws, self.image, self.tmp = aws, image, tmp
        self.host_ca = keygen(tmp / "host_ca")
        self.key = keygen(tmp / "id")
        self.known_hosts = tmp / "known_hosts"
        known_hosts.write(self.known_hosts, "pytest", known_hosts.ca_lines("pytest", [], ["i-*"], [self.host_ca]))
        self.port = emulator.free_port()
        self.names: list[str] = []
        self.runs = 0

    def launch(self) -> str:
        """A new instance at the same address (127.0.0.1:port): new id, new host keys."""
        for name in self.names:
            containers.remove(name)
        iid = client("ec2").run_instances(ImageId=AMI, MinCount=1, MaxCount=1)["Instances"][0]["InstanceId"]
        name = f"reach-pytest-{uuid.uuid4().hex[:8]}"
        containers.docker("run", "-d", "--name", name, "--label", containers.MANAGED_LABEL, *containers.SYSTEMD_ARGS,
                          "-p", f"127.0.0.1:{self.port}:22", self.image, "/lib/systemd/systemd")
        self.names.append(name)
        containers.boot(name, self.key, console=self.aws.console_dir / iid)
        self.iid, self.name = iid, name
        return iid

    def reach(self) -> subprocess.CompletedProcess:
        """playbooks/reach.yml from a fresh controller home (no ControlPersist connection left over)."""
        self.runs += 1
        home = self.tmp / f"home-{self.runs}"
        home.mkdir()
        inventory = self.tmp / "inventory.yml"
        inventory.write_text(yaml.safe_dump({"all": {"hosts": {"web-1": {
            "ansible_host": "127.0.0.1", "ansible_port": self.port, "ansible_user": "admin",
            "ansible_ssh_private_key_file": str(self.tmp / "id"),
            "ansible_ssh_common_args": f"-o HostKeyAlias={self.iid} -o UserKnownHostsFile={self.known_hosts} "
                                       "-o GlobalKnownHostsFile=/dev/null",
            "ec2_instance_id": self.iid, "ec2_region": "us-east-1",
            "common_ssh_host_certificate": True, "common_ssh_host_ca_private_key": str(self.tmp / "host_ca"),
        }}}}))
        env = {**os.environ, "HOME": str(home), "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1",
               "ANSIBLE_SSH_RETRIES": "2"}
        return subprocess.run([str(PLAYBOOK), "-i", str(inventory), "playbooks/reach.yml"], cwd=REPO, env=env,
                              capture_output=True, text=True, timeout=600)

    def certificate(self) -> dict:
        text = containers.docker("exec", self.name, "cat", "/etc/ssh/ssh_host_ed25519_key-cert.pub")
        return ssh_ca.parse_certificate(text)


@pytest.fixture
def world(aws, base_image, tmp_path):
    made = World(aws, base_image, tmp_path)
    try:
        yield made
    finally:
        for name in made.names:
            containers.remove(name)


def met_through_the_console(run: subprocess.CompletedProcess) -> bool:
    """Whether the console task ran (ok) rather than being skipped, from the task's own output."""
    after = run.stdout.split("TASK [Read the ed25519 host key from the console output", 1)
    if len(after) < 2:
        return False
    outcome = re.search(r"^(ok|skipping|changed|fatal): \[", after[1], re.MULTILINE)
    return bool(outcome) and outcome.group(1) == "ok"


def test_a_new_instance_is_met_through_its_console_then_by_its_certificate(world):
    iid = world.launch()
    ca_lines = world.known_hosts.read_text()
    first = world.reach()
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-2000:]
    assert met_through_the_console(first), first.stdout[-3000:]
    cert = world.certificate()
    assert iid in cert["principals"] and ssh_ca.same_key(cert["signing_ca"], world.host_ca)
    # From now on the certificate alone: without the console, and nothing learnt on the way.
    (world.aws.console_dir / iid).unlink()
    second = world.reach()
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-2000:]
    assert not met_through_the_console(second)
    assert world.known_hosts.read_text() == ca_lines


def test_a_forged_host_key_is_refused_even_on_first_contact(world):
    world.launch()
    # Someone else's sshd answers for the instance: another key, no certificate of the CA.
    containers.docker("exec", world.name, "sh", "-c",
                      "rm -f /etc/ssh/ssh_host_* && ssh-keygen -A && systemctl restart ssh")
    run = world.reach()
    assert run.returncode != 0
    assert "Host key verification failed" in run.stdout + run.stderr, run.stdout[-3000:]
    listing = containers.docker("exec", world.name, "ls", "/etc/ssh")
    assert "ssh_host_ed25519_key-cert.pub" not in listing  # the CA signed nothing for it


def test_an_instance_replaced_at_the_same_address_is_reached_with_no_known_hosts_change(world):
    world.launch()
    assert world.reach().returncode == 0
    ca_lines = world.known_hosts.read_text()
    replacement = world.launch()
    run = world.reach()
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    assert replacement in world.certificate()["principals"]
    assert world.known_hosts.read_text() == ca_lines

"""Containers that stand in for the local fleet's EC2 instances (docker CLI).

Each running emulated instance is backed by one systemd container from the project's base
image, named ``ec2fleet-<fleet>-<instance-id>`` and labelled with the instance id. Its address
on the fleet's docker network is the instance's private IP in the emulator, so the inventory's
bastion wiring and the load balancer use the addresses AWS reports.

What cloud-init does on a real instance (the key pair's public key for the default user
`admin`, passwordless sudo, the SSH host keys on the console, user data) is done here by `boot()`:
that is the local stand-in.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

MANAGED_LABEL = "io.ec2fleet.managed=true"
SYSTEMD_ARGS = [
    "--cap-add", "SYS_ADMIN", "--security-opt", "seccomp=unconfined", "--cgroupns=host",
    "-v", "/sys/fs/cgroup:/sys/fs/cgroup:rw", "--tmpfs", "/run", "--tmpfs", "/run/lock",
]
DEFAULT_USER = "admin"  # the default user of Debian's official AMIs


class DockerError(RuntimeError):
    pass


def docker(*args: str, check: bool = True, input: str | None = None, timeout: float = 120) -> str:
    proc = subprocess.run(["docker", *args], capture_output=True, text=True, input=input, timeout=timeout)
    if check and proc.returncode != 0:
        raise DockerError(f"docker {' '.join(args[:3])}...: {proc.stderr.strip() or proc.stdout.strip()}")
    return proc.stdout


def container_name(fleet: str, instance_id: str) -> str:
    return f"ec2fleet-{fleet}-{instance_id}"


def ensure_network(name: str, subnet: str, gateway: str) -> None:
    if docker("network", "inspect", name, check=False).strip() not in ("", "[]"):
        return
    docker("network", "create", "--driver", "bridge", "--subnet", subnet, "--gateway", gateway,
           "--label", MANAGED_LABEL, name)


def remove_network(name: str) -> None:
    docker("network", "rm", name, check=False)


def list_fleet(fleet: str) -> dict[str, dict]:
    """instance id -> {name, state, ip} for the fleet's containers."""
    out = docker("ps", "-a", "--filter", f"label=io.ec2fleet.fleet={fleet}",
                 "--format", "{{json .}}")
    found = {}
    for line in out.splitlines():
        row = json.loads(line)
        labels = dict(kv.split("=", 1) for kv in row.get("Labels", "").split(",") if "=" in kv)
        iid = labels.get("io.ec2fleet.instance-id")
        if iid:
            found[iid] = {"name": row["Names"], "state": row["State"]}
    return found


def start(fleet: str, network: str, image: str, instance: dict, public: tuple[str, str] | None = None,
          extra_caps: tuple[str, ...] = ()) -> str:
    """Run the instance's container at its private IP on the VPC's network; ``public`` (a network
    and the instance's public IP) adds an interface there, where the controller reaches it."""
    iid = instance["InstanceId"]
    name = container_name(fleet, iid)
    ip = instance["PrivateIpAddress"]
    args = ["run", "-d", "--name", name, "--hostname", "ip-" + ip.replace(".", "-"),
            "--network", network, "--ip", ip,
            "--label", MANAGED_LABEL, "--label", f"io.ec2fleet.fleet={fleet}",
            "--label", f"io.ec2fleet.instance-id={iid}", *SYSTEMD_ARGS]
    for cap in extra_caps:
        args += ["--cap-add", cap]
    docker(*args, image, "/lib/systemd/systemd")
    if public:
        docker("network", "connect", "--ip", public[1], public[0], name)
    return name


def wait_booted(name: str, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    state = ""
    while time.monotonic() < deadline:
        state = docker("exec", name, "systemctl", "is-system-running", check=False).strip()
        if state in ("running", "degraded"):
            return
        time.sleep(0.5)
    raise DockerError(f"{name} did not finish booting in {timeout:.0f}s (systemd: {state or 'no answer'})")


def boot(name: str, public_key: str, user_data: str = "", *, console: Path) -> None:
    """The cloud-init stand-in: default user with the key pair, sudo, the SSH host keys printed
    on the console (written to `console`, which the emulator serves as GetConsoleOutput), then
    user data."""
    wait_booted(name)
    script = f"""set -e
id -u {DEFAULT_USER} >/dev/null 2>&1 || useradd -m -s /bin/bash {DEFAULT_USER}
install -d -m 0700 -o {DEFAULT_USER} -g {DEFAULT_USER} /home/{DEFAULT_USER}/.ssh
printf '%s\\n' "$KEY" > /home/{DEFAULT_USER}/.ssh/authorized_keys
chown {DEFAULT_USER}:{DEFAULT_USER} /home/{DEFAULT_USER}/.ssh/authorized_keys
chmod 0600 /home/{DEFAULT_USER}/.ssh/authorized_keys
printf '{DEFAULT_USER} ALL=(ALL) NOPASSWD:ALL\\n' > /etc/sudoers.d/90-cloud-init-users
chmod 0440 /etc/sudoers.d/90-cloud-init-users
"""
    docker("exec", "-e", f"KEY={public_key.strip()}", name, "bash", "-c", script)
    # cloud-init's keys_to_console: the keys sshd generated at its first start.
    keys = docker("exec", name, "sh", "-c", "cat /etc/ssh/ssh_host_*_key.pub").strip()
    console.write_text(f"-----BEGIN SSH HOST KEY KEYS-----\n{keys}\n-----END SSH HOST KEY KEYS-----\n")
    if user_data.strip():
        # Like cloud-init's scripts-user: the script runs once, as root, logged to the journal.
        docker("exec", "-i", name, "bash", "-c",
               "cat > /var/lib/cloud-user-data && chmod 0700 /var/lib/cloud-user-data && "
               "systemd-run --unit cloud-user-data --collect /var/lib/cloud-user-data",
               input=user_data)


def remove(name: str) -> None:
    docker("rm", "-f", name, check=False)

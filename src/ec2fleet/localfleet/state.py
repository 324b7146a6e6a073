"""Where a local fleet keeps its state on disk, and the AWS clients that reach its emulator.

`.cache/localfleet/<fleet>/` holds state.json (emulator endpoint and PID, ports, network, ids),
the fleet's SSH key pair, its SSH CAs (ssh-ca/: host CA, user CA, operators' policy) and the
known_hosts that trusts the host CA, the balancer's config and PID, fleetd's PID and log.
"""

from __future__ import annotations

import getpass
import json
import os
import shlex
import subprocess
from pathlib import Path

from ec2fleet.aws import REPO, client_layer
from ec2fleet.emulator import DUMMY_CREDENTIALS
from ec2fleet.localfleet.world import network_gateway, public_network

STATE_ROOT = Path(os.environ.get("EC2FLEET_LOCAL_STATE", REPO / ".cache" / "localfleet"))


class FleetState:
    def __init__(self, directory: Path, data: dict):
        self.dir = directory
        self.data = data
        self._clients = None

    @property
    def name(self) -> str:
        return self.data["name"]

    @classmethod
    def path_for(cls, name: str) -> Path:
        return STATE_ROOT / name

    @classmethod
    def load(cls, directory: Path) -> FleetState:
        path = Path(directory) / "state.json"
        if not path.exists():
            raise FileNotFoundError(f"no local fleet state at {path}: run `tools/fleet up` first")
        return cls(Path(directory), json.loads(path.read_text()))

    @classmethod
    def create(cls, name: str, **data) -> FleetState:
        directory = cls.path_for(name)
        directory.mkdir(parents=True, exist_ok=True)
        state = cls(directory, {"name": name, **data})
        state.save()
        return state

    def save(self) -> None:
        tmp = self.dir / "state.json.new"
        tmp.write_text(json.dumps(self.data, indent=2, sort_keys=True))
        tmp.replace(self.dir / "state.json")

    # -- AWS -------------------------------------------------------------------------------
    def env(self) -> dict[str, str]:
        """What boto3, Ansible and the inventory plugin need to talk to this fleet's emulator."""
        return {
            "AWS_ENDPOINT_URL": self.data["endpoint"],
            "AWS_DEFAULT_REGION": self.data["region"],
            "AWS_REGION": self.data["region"],
            **DUMMY_CREDENTIALS,
            # The fleet the ops commands (tools/fleet) act on (control.default_name).
            "EC2FLEET_FLEET": self.name,
            "EC2FLEET_LOCAL_SSH_KEY": str(self.key_path),
            "EC2FLEET_LOCAL_SSH_CA": str(self.ssh_ca_dir),
            "EC2FLEET_LOCAL_DOUBLES": str(self.dir / "doubles"),
            # The controller's addresses on the fleet's networks (the bastion's fail2ban ignores them).
            "EC2FLEET_LOCAL_CONTROLLER_ADDRESSES": f"{network_gateway(self.name)} {public_network(self.name).gateway}",
            # The ec2_fleet plugin's bastion_ssh_args: the hop to the bastion's public address
            # checks its certificate against the fleet's known_hosts and logs in with the key pair.
            "EC2FLEET_BASTION_SSH_ARGS": shlex.join([
                "-q", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes",
                "-o", f"UserKnownHostsFile={self.known_hosts_path}", "-i", str(self.key_path)]),
        }

    def clients(self, service: str, region: str | None = None):
        if self._clients is None:
            _, self._clients = client_layer.fleet_clients(
                region=self.data["region"], endpoint_url=self.data["endpoint"],
                access_key=DUMMY_CREDENTIALS["AWS_ACCESS_KEY_ID"],
                secret_key=DUMMY_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
                session_token=DUMMY_CREDENTIALS["AWS_SESSION_TOKEN"],
            )
        return self._clients(service, region)

    # -- SSH key pair (the fleet's EC2 key pair) -------------------------------------------
    @property
    def key_path(self) -> Path:
        return self.dir / "id_ed25519"

    def ensure_key(self) -> None:
        if not self.key_path.exists():
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"ec2fleet-{self.name}",
                            "-f", str(self.key_path)], check=True)

    def public_key(self) -> str:
        return self.key_path.with_suffix(".pub").read_text().strip()

    # -- SSH CAs (on the controller, as in production) and the known_hosts trusting the host CA --
    @property
    def ssh_ca_dir(self) -> Path:
        return self.dir / "ssh-ca"

    @property
    def known_hosts_path(self) -> Path:
        return self.dir / "known_hosts"

    def ensure_ssh_cas(self) -> None:
        """The fleet's host CA and user CA (ed25519, no passphrase: a local test fleet), and the
        operators' policy of `tools/fleet sign-key`: this machine's user may be `admin`."""
        self.ssh_ca_dir.mkdir(mode=0o700, exist_ok=True)
        for name in ("host_ca", "user_ca"):
            if not (self.ssh_ca_dir / name).exists():
                subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"ec2fleet-{self.name}-{name}",
                                "-f", str(self.ssh_ca_dir / name)], check=True)
        policy = self.ssh_ca_dir / "operators.yml"
        if not policy.exists():
            policy.write_text(f"# Who may get which principals from `tools/fleet sign-key` (ec2fleet/user_certs.py).\n"
                              f"operators:\n  {getpass.getuser()}: {{principals: [admin], max_hours: 8}}\n")

    def console_path(self, instance_id: str) -> Path:
        """Where the emulator serves the instance's console output from (GetConsoleOutput); `up`
        refuses a fleet whose emulator could not (made by an older checkout)."""
        return Path(self.data["console_dir"]) / instance_id

    # -- flags (e.g. "converged": site.yml has run once, so new instances get the callback) --
    def set_flag(self, name: str) -> None:
        (self.dir / f"{name}.flag").touch()

    def read_flag(self, name: str) -> bool:
        return (self.dir / f"{name}.flag").exists()

    # -- fleetd status ---------------------------------------------------------------------
    def write_status(self, status: dict) -> None:
        tmp = self.dir / "status.json.new"
        tmp.write_text(json.dumps(status))
        tmp.replace(self.dir / "status.json")

    def read_status(self) -> dict:
        try:
            return json.loads((self.dir / "status.json").read_text())
        except (OSError, ValueError):
            return {}

"""Everyday fleet operations behind the Fabric tasks: hosts come from the ec2_fleet inventory.

The same code serves the local fleet and a real AWS fleet: it reads hosts, groups and
connection settings from `ansible-inventory -i <file> --list` (the ec2_fleet plugin has already
wired the bastion ProxyJump/ProxyCommand), and target health from the AWS API through
plugins/module_utils/aws.py (the collection's client layer).
"""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from ec2fleet.aws import REPO, client_layer


def plain(value):
    """Inventory JSON with ansible-core 2.19's trust markers removed.

    `ansible-inventory --list` writes strings that came from an inventory plugin as
    {"__ansible_unsafe": "..."} (untrusted data, so the output can be re-read as an inventory
    script without losing that); callers that only read values need the plain strings."""
    if isinstance(value, dict):
        if set(value) == {"__ansible_unsafe"}:
            return value["__ansible_unsafe"]
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [plain(item) for item in value]
    return value


@dataclass
class Host:
    name: str
    vars: dict
    groups: list[str] = field(default_factory=list)

    @property
    def address(self) -> str:
        return str(self.vars.get("ansible_host") or self.name)

    @property
    def port(self) -> int:
        return int(self.vars.get("ansible_port") or 22)

    @property
    def user(self) -> str | None:
        return self.vars.get("ansible_user")

    @property
    def key_file(self) -> str | None:
        return self.vars.get("ansible_ssh_private_key_file")

    def ssh_command(self) -> str:
        """The plain ssh command line that reaches this host, as Ansible would connect."""
        parts = ["ssh", *shlex.split(str(self.vars.get("ansible_ssh_common_args") or ""))]
        if self.key_file:
            parts += ["-i", self.key_file]
        parts += ["-p", str(self.port), f"{self.user}@{self.address}" if self.user else self.address]
        return shlex.join(parts)


class Inventory:
    def __init__(self, source: str, env: dict | None = None):
        self.source = source
        self.env = env
        out = subprocess.run(
            [str(Path(sys.executable).parent / "ansible-inventory"), "-i", source, "--list"],
            capture_output=True, text=True, cwd=REPO, env=env,
        )
        if out.returncode != 0:
            raise SystemExit(f"inventory {source} failed:\n{out.stderr.strip()}")
        data = plain(json.loads(out.stdout))
        hostvars = data.get("_meta", {}).get("hostvars", {})
        membership: dict[str, list[str]] = {}

        def walk(group: str):
            for host in data.get(group, {}).get("hosts", []):
                membership.setdefault(host, []).append(group)
            for child in data.get(group, {}).get("children", []):
                walk(child)

        walk("all")
        self.hosts = {name: Host(name, hostvars.get(name, {}), sorted(set(membership.get(name, []))))
                      for name in hostvars}

    def select(self, pattern: str) -> list[Host]:
        """Hosts in a group or named directly (a comma-separated list of either)."""
        chosen = []
        for part in pattern.split(","):
            part = part.strip()
            matched = [h for h in self.hosts.values() if part in ("all", h.name) or part in h.groups]
            if not matched:
                raise SystemExit(f"no host or group matches {part!r} in {self.source}")
            chosen += [h for h in matched if h not in chosen]
        return sorted(chosen, key=lambda h: h.name)


class ConnectError(OSError):
    """ssh could not open the connection (refused, dropped, host key check failed...)."""


@dataclass
class Result:
    exited: int
    stdout: str
    stderr: str


class SshSession:
    """One host reached with the OpenSSH client, as Ansible reaches it: the inventory's ssh options
    (ProxyJump or ProxyCommand through the bastion, known_hosts, HostKeyAlias) and host keys
    checked strictly (ansible.cfg's StrictHostKeyChecking=yes), so a host certificate of the
    fleet's host CA is verified; Paramiko cannot verify certificates. `open` makes a master
    connection (ControlMaster) that `run` uses: a command runs only on an open connection, once."""

    def __init__(self, host: Host):
        self.host = host
        self._dir: str | None = None

    def argv(self, *extra: str) -> list[str]:
        args = ["ssh", "-o", "StrictHostKeyChecking=yes", "-o", "ConnectTimeout=15", "-o", "ServerAliveInterval=30"]
        if self._dir:
            args += ["-o", f"ControlPath={self._dir}/master"]
        args += shlex.split(str(self.host.vars.get("ansible_ssh_common_args") or ""))
        if self.host.key_file:
            args += ["-i", self.host.key_file]
        target = f"{self.host.user}@{self.host.address}" if self.host.user else self.host.address
        return [*args, *extra, "-p", str(self.host.port), target]

    def open(self) -> None:
        self._dir = tempfile.mkdtemp(prefix="ec2fleet-ops-")
        proc = subprocess.run(self.argv("-o", "BatchMode=yes", "-o", "ControlMaster=yes", "-o", "ControlPersist=yes",
                                        "-f", "-N"),
                              capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=120)
        if proc.returncode != 0:
            raise ConnectError(" ".join(proc.stderr.split()) or f"ssh exited with {proc.returncode}")

    def run(self, command: str, timeout=300) -> Result:
        # ssh [options] destination command: the command comes after the destination.
        proc = subprocess.run([*self.argv("-o", "BatchMode=yes", "-o", "ControlMaster=no"), command],
                              capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=timeout)
        return Result(proc.returncode, proc.stdout, proc.stderr)

    def sudo(self, command: str, **kwargs) -> Result:
        return self.run(f"sudo -n sh -c {shlex.quote(command)}", **kwargs)

    def close(self) -> None:
        if self._dir:
            subprocess.run(self.argv("-O", "exit"), capture_output=True, stdin=subprocess.DEVNULL, timeout=30)
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None


def connection(host: Host) -> SshSession:
    """An SSH session that reaches the host the way Ansible does (bastion included)."""
    return SshSession(host)


# Every host is a new SSH connection through the bastion, whose sshd (CIS MaxStartups 10:30:60)
# drops handshakes beyond 10 unauthenticated connections: at most this many connect at once.
PARALLEL_CONNECTIONS = 8
# A connection that fails before the command runs is tried again after 1 and 3 s (Ansible's ssh
# retries back off the same way); a command is never run twice.
CONNECT_ATTEMPTS = 3


def _pause(seconds: float) -> None:
    time.sleep(seconds)


def _connect(conn) -> Exception | None:
    """Open the connection, retrying connection-level failures; the last error, or None."""
    error = None
    for attempt in range(CONNECT_ATTEMPTS):
        if attempt:
            _pause(2 ** attempt - 1)
        try:
            conn.open()
            return None
        except (OSError, subprocess.TimeoutExpired) as exc:  # refused, dropped, host key check failed
            error = exc
            conn.close()
    return error


def run_parallel(hosts: list[Host], command: str, sudo: bool = False) -> dict[str, tuple[int, str]]:
    """Run one shell command on many hosts, a bounded number at a time; host -> (code, output)."""

    def one(host: Host) -> tuple[int, str]:
        conn = connection(host)
        try:
            error = _connect(conn)
            if error is not None:
                return 255, f"{type(error).__name__}: {error}"
            try:
                result = (conn.sudo if sudo else conn.run)(command, timeout=300)
            except Exception as exc:
                return 255, f"{type(exc).__name__}: {exc}"
            return result.exited, (result.stdout + result.stderr).strip()
        finally:
            conn.close()

    with ThreadPoolExecutor(max_workers=PARALLEL_CONNECTIONS, thread_name_prefix="fleet-ops") as pool:
        return dict(zip([h.name for h in hosts], pool.map(one, hosts), strict=True))


def target_health(hosts: list[Host]) -> dict[str, str]:
    """instance id -> target health state(s) across the target groups the inventory reported."""
    by_region: dict[str, set[str]] = {}
    for host in hosts:
        for arn in host.vars.get("target_group_arns") or []:
            by_region.setdefault(host.vars.get("ec2_region", "us-east-1"), set()).add(arn)
    health: dict[str, list[str]] = {}
    for region, arns in by_region.items():
        _, clients = client_layer.fleet_clients(region=region)
        for arn in sorted(arns):
            descs = clients("elbv2").describe_target_health(TargetGroupArn=arn)["TargetHealthDescriptions"]
            for desc in descs:
                health.setdefault(desc["Target"]["Id"], []).append(desc["TargetHealth"]["State"])
    return {iid: ",".join(states) for iid, states in health.items()}


def vpc_ranges(hosts: list[Host]) -> list[str]:
    """The address ranges (CIDRs) of the VPCs the hosts are in: where the fleet's hosts live."""
    by_region: dict[str, set[str]] = {}
    for host in hosts:
        if host.vars.get("ec2_vpc_id"):
            by_region.setdefault(host.vars.get("ec2_region", "us-east-1"), set()).add(str(host.vars["ec2_vpc_id"]))
    ranges: list[str] = []
    for region, vpc_ids in sorted(by_region.items()):
        _, clients = client_layer.fleet_clients(region=region)
        for vpc in clients("ec2").describe_vpcs(VpcIds=sorted(vpc_ids))["Vpcs"]:
            blocks = [a["CidrBlock"] for a in vpc.get("CidrBlockAssociationSet", [])
                      if a.get("CidrBlockState", {}).get("State", "associated") == "associated"]
            for block in [vpc["CidrBlock"], *blocks]:
                if block not in ranges:
                    ranges.append(block)
    return ranges


def public_addresses(hosts: list[Host]) -> list[str]:
    """The public addresses and DNS names the hosts have (a bastion's, a host reached directly):
    outside the VPC ranges, and principals of the hosts' certificates all the same."""
    found = (str(host.vars.get(key) or "") for host in hosts for key in ("ec2_public_ip_address", "ec2_public_dns_name"))
    return list(dict.fromkeys(value for value in found if value))  # in order, once each


def status_order(host: Host) -> tuple[str, str]:
    """Status table order: by ASG (hosts outside any ASG first), then by name."""
    return (str(host.vars.get("asg_name") or ""), host.name)


def status_rows(inv: Inventory, app_name: str = "sampleapp") -> list[dict]:
    hosts = sorted(inv.hosts.values(), key=status_order)
    versions = run_parallel(hosts, f"basename \"$(readlink /opt/{app_name}/current 2>/dev/null)\" 2>/dev/null || true")
    health = target_health(hosts)
    rows = []
    for host in hosts:
        code, out = versions.get(host.name, (1, ""))
        iid = host.vars.get("ec2_instance_id", "")
        rows.append({
            "host": host.name,
            "instance": iid,
            "az": host.vars.get("ec2_availability_zone", ""),
            "asg": host.vars.get("asg_name") or "-",
            "lifecycle": host.vars.get("asg_lifecycle_state") or "-",
            "target health": health.get(iid, "-"),
            "release": (out.splitlines()[-1] if out else "-") if code == 0 else "unreachable",
        })
    return rows


def group_rows(inv: Inventory) -> list[dict]:
    """One row per Auto Scaling Group the inventory's hosts belong to: its sizes ("fixed" when
    MinSize equals the desired capacity), instances in service of all, and target groups."""
    by_region: dict[str, set[str]] = {}
    for host in inv.hosts.values():
        if host.vars.get("asg_name"):
            by_region.setdefault(host.vars.get("ec2_region", "us-east-1"), set()).add(str(host.vars["asg_name"]))
    rows = []
    for region, names in sorted(by_region.items()):
        _, clients = client_layer.fleet_clients(region=region)
        ordered = sorted(names)
        for chunk in (ordered[i:i + 50] for i in range(0, len(ordered), 50)):
            for group in clients("autoscaling").describe_auto_scaling_groups(
                    AutoScalingGroupNames=chunk)["AutoScalingGroups"]:
                members = group["Instances"]
                rows.append({
                    "asg": group["AutoScalingGroupName"],
                    "region": region,
                    "min/desired/max": f"{group['MinSize']}/{group['DesiredCapacity']}/{group['MaxSize']}",
                    "size": "fixed" if 0 < group["MinSize"] == group["DesiredCapacity"] else "-",
                    "in service": f"{sum(m['LifecycleState'] == 'InService' for m in members)} of {len(members)}",
                    "target groups": ",".join(arn.rsplit("/", 2)[-2] for arn in group.get("TargetGroupARNs", []))
                    or "-",
                })
    return sorted(rows, key=lambda row: (row["region"], row["asg"]))


def status_summary(rows: list[dict]) -> str:
    """One line over the status table: lifecycle states, target health and releases, counted."""
    def counted(key: str) -> str:
        counts: dict[str, int] = {}
        for row in rows:
            if row.get("asg", "-") != "-":  # instances of an ASG: the fleet a rollout moves
                counts[row[key]] = counts.get(row[key], 0) + 1
        return ", ".join(f"{n} {value}" for value, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))

    in_asg = sum(1 for row in rows if row.get("asg", "-") != "-")
    return (f"{in_asg} instance(s) | lifecycle: {counted('lifecycle') or '-'} | "
            f"targets: {counted('target health') or '-'} | releases: {counted('release') or '-'}")


def table(rows: list[dict]) -> str:
    if not rows:
        return "(no hosts)"
    cols = list(rows[0])
    width = {c: max(len(c), *(len(str(r[c])) for r in rows)) for c in cols}
    line = "  ".join(c.upper().ljust(width[c]) for c in cols)
    body = ["  ".join(str(r[c]).ljust(width[c]) for c in cols) for r in rows]
    return "\n".join([line, *body])


def interactive(host: Host) -> int:
    """An interactive shell on the host (through the bastion when the inventory wired one),
    its host key checked strictly; ssh's exit code."""
    return subprocess.call(connection(host).argv("-t"))

"""Bring a local fleet up, take it down, and look at it: used by the Fabric tasks (fabfile.py).

`up` is idempotent: it reuses a running emulator and fleet and only adds what is missing (or
changes the web ASG's size, or a group's). Groups beside `web` (`groups`, e.g. "api:2:fixed")
are added or resized, never removed, by a later `up`. `down` stops fleetd (which stops the
balancer), removes every container and the network of the fleet, stops the emulator by its PID
and deletes the state.

A fleet is named (`local` unless EC2FLEET_FLEET names another): each has its own emulator,
networks, address ranges and balancer ports, so two can run side by side (the e2e tests' fleet
beside the README's).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from ec2fleet import emulator, known_hosts, progress
from ec2fleet.aws import REPO
from ec2fleet.localfleet import containers
from ec2fleet.localfleet.state import FleetState
from ec2fleet.localfleet.world import (
    DEFAULT_GROUP,
    DEFAULT_SIZE,
    FleetSpec,
    GroupSpec,
    World,
    network_gateway,
    parse_groups,
    public_network,
    vpc_cidr,
)

# The launch template's user data: on AWS it would call the controller back (docs/bootstrap.md);
# here fleetd is the callback receiver, so the instance only records the request.
CALLBACK_USER_DATA = """#!/bin/sh
logger -t provisioning-callback "instance booted: requesting site.yml from the controller"
"""


def _alive(pid) -> bool:
    try:
        os.kill(int(pid), 0)
        return True
    except (OSError, TypeError, ValueError):
        return False


def _say(msg: str) -> None:
    progress.phase(f"fleet: {msg}")


def default_name() -> str:
    """The fleet the commands act on when none is named: EC2FLEET_FLEET, else `local`
    (`tools/fleet env` exports the variable, so commands run after it reach the same fleet)."""
    return os.environ.get("EC2FLEET_FLEET") or "local"


def load(name: str | None = None) -> FleetState:
    return FleetState.load(FleetState.path_for(name or default_name()))


def exists(name: str | None = None) -> bool:
    return (FleetState.path_for(name or default_name()) / "state.json").exists()


def describe(spec: FleetSpec) -> str:
    """`ASG web of 4, api of 2 (fixed, target group second)`."""
    parts = []
    for group in spec.all_groups():
        notes = (["fixed"] if group.fixed else []) + (
            [f"target group {group.target_group}"] if group.target_group != DEFAULT_GROUP else [])
        parts.append(f"{group.name} of {group.size}" + (f" ({', '.join(notes)})" if notes else ""))
    return "ASG " + ", ".join(parts)


def _allocate_ports(state: FleetState, target_groups: list[str]) -> dict[str, int]:
    """A 127.0.0.1 port for each target group's listener: `web` keeps lb_port; kept across `up`s."""
    ports = {DEFAULT_GROUP: state.data["lb_port"], **state.data.get("lb_ports", {})}
    taken = set(ports.values()) | {state.data.get("emulator_port")}
    for name in target_groups:
        while name not in ports:
            port = emulator.free_port()
            if port not in taken:
                ports[name] = port
                taken.add(port)
    state.data["lb_ports"] = ports
    return ports


def up(size: int = DEFAULT_SIZE, name: str | None = None, timeout: float = 300, user_data: str = "",
       groups: str | list[str | GroupSpec] | tuple = ()) -> FleetState:
    """Bring the fleet up: ASG `web` of `size`, and the `groups` beside it (GroupSpecs, or their
    text form `NAME:SIZE[:fixed][:tg=TARGET_GROUP]`, a list or comma-separated)."""
    name = name or default_name()
    spec = FleetSpec(name=name, size=size, groups=parse_groups(groups))
    spec.validate()  # before anything starts
    image = subprocess.run([str(REPO / "tools" / "platform"), "image"], check=True,
                           stdout=subprocess.PIPE, text=True).stdout.split()[-1]
    state = load(name) if exists(name) else None
    if state is None or not _alive(state.data.get("emulator_pid")):
        if state is not None:
            _say("the previous emulator is gone: starting a fresh fleet")
            down(name)
        server = emulator.MotoServer().start(detach=True)
        state = FleetState.create(
            name, endpoint=server.endpoint_url, emulator_pid=server.pid, emulator_port=server.port,
            region=server.region, lb_port=emulator.free_port(), network=f"ec2fleet-{name}",
            public_network=f"ec2fleet-{name}-public", image=image, console_dir=str(server.console_dir),
        )
        _say(f"emulator on {server.endpoint_url} (pid {server.pid})")
    if "console_dir" not in state.data:
        # Its emulator cannot serve console output: new instances could not be met without trust
        # on first use (playbooks/reach.yml), and its known_hosts holds keys learnt that way.
        raise RuntimeError(f"the {name} fleet was made before SSH certificates: `tools/fleet down`, then `up` again")
    if "public_network" not in state.data:
        # Its bastion has no public address the controller reaches, nor a certificate for one.
        raise RuntimeError(f"the {name} fleet was made before its bastion had a public address: "
                           "`tools/fleet down`, then `up` again")
    state.data["image"] = image
    state.ensure_key()
    state.ensure_ssh_cas()
    _say("agent test doubles (signed packages in file:// buckets)")
    with progress.heartbeat("fleet: agent test doubles"):
        build_agent_doubles(state)
    # The containers' network is the VPC: instance private IPs are container addresses.
    containers.ensure_network(state.data["network"], vpc_cidr(name), network_gateway(name))
    public = public_network(name)
    containers.ensure_network(state.data["public_network"], public.subnet, public.gateway)
    spec = FleetSpec(name=name, size=size, groups=spec.groups, public_key=state.public_key(),
                     user_data=user_data or CALLBACK_USER_DATA)
    ports = _allocate_ports(state, spec.target_group_names())
    _say(f"emulated AWS: VPC, bastion, {describe(spec)}, target group(s) {', '.join(spec.target_group_names())}")
    ids = World(state.clients, spec).ensure()
    # Groups and target groups an earlier `up` made stay (this one may not name them).
    ids["groups"] = {**state.data.get("groups", {}), **ids["groups"]}
    ids["target_groups"] = {**state.data.get("target_groups", {}), **ids["target_groups"]}
    state.data.update(ids, size=size)
    state.save()
    trust_host_ca(state)
    for tg in spec.target_group_names()[1:]:
        _say(f"target group {tg}: balancer on 127.0.0.1:{ports[tg]} "
             f"(ALB listener port {ids['target_groups'][tg]['listener_port']})")
    start_fleetd(state)
    wait_ready(state, timeout)
    return state


def trust_host_ca(state: FleetState) -> None:
    """The fleet's known_hosts holds only the @cert-authority line of its host CA: its VPC's
    addresses, its public addresses (the bastion's) and the instance ids (hosts reached over
    SSM). Lines an older checkout learnt on first use are dropped."""
    state.known_hosts_path.unlink(missing_ok=True)
    known_hosts.write(state.known_hosts_path, state.name, known_hosts.ca_lines(
        state.name, [vpc_cidr(state.name), public_network(state.name).subnet], ["i-*"],
        [(state.ssh_ca_dir / "host_ca.pub").read_text().strip()]))


# The real CloudWatch and CodeDeploy agent packages cannot be downloaded here: the local fleet
# installs the labelled TEST DOUBLES (tests/doubles/README.md) from file:// "buckets" on the
# controller, signed with a key made for this fleet. The roles do everything else for real.
DOUBLE_VERSIONS = {"cloudwatch": "1.300099.0b1", "codedeploy": "1.7.1-110"}


def build_agent_doubles(state: FleetState) -> None:
    root = state.dir / "doubles"
    build = [sys.executable, str(REPO / "tests" / "doubles" / "build.py")]
    if not (root / "gnupg" / "public.asc").exists():
        subprocess.run([*build, "signing-key", "--gnupghome", str(root / "gnupg")], check=True,
                       stdout=subprocess.DEVNULL)
    if not (root / "cloudwatch-bucket").exists():
        subprocess.run([*build, "cloudwatch-repo", "--version", DOUBLE_VERSIONS["cloudwatch"],
                        "--root", str(root / "cloudwatch-bucket"), "--sign", str(root / "gnupg")],
                       check=True, stdout=subprocess.DEVNULL)
    if not (root / "codedeploy-bucket").exists():
        subprocess.run([*build, "codedeploy-agent", "--version", DOUBLE_VERSIONS["codedeploy"],
                        "--out", str(root / "codedeploy-bucket" / "releases")], check=True, stdout=subprocess.DEVNULL)


def start_fleetd(state: FleetState) -> None:
    pidfile = state.dir / "fleetd.pid"
    if pidfile.exists() and _alive(pidfile.read_text().strip()):
        return
    log = open(state.dir / "fleetd.log", "ab")  # noqa: SIM115 - handed to the child
    proc = subprocess.Popen(
        [sys.executable, "-m", "ec2fleet.localfleet.fleetd", "--state-dir", str(state.dir)],
        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
    )
    log.close()
    pidfile.write_text(str(proc.pid))
    proc.returncode = 0  # detached on purpose; `down` stops it by PID
    _say(f"fleetd started (pid {proc.pid}, log {state.dir / 'fleetd.log'})")


def lb_urls(state: FleetState) -> dict[str, str]:
    """Target group short name -> the local balancer's URL for it (`web` first)."""
    ports = {DEFAULT_GROUP: state.data["lb_port"], **state.data.get("lb_ports", {})}
    names = [DEFAULT_GROUP, *sorted(set(state.data.get("target_groups", {})) - {DEFAULT_GROUP})]
    return {tg: f"http://127.0.0.1:{ports[tg]}/" for tg in names if tg in ports}


def wait_ready(state: FleetState, timeout: float) -> None:
    """Until every running instance has a booted container."""
    world = World(state.clients, FleetSpec(name=state.name))
    deadline = time.monotonic() + timeout
    said, said_at = None, 0.0
    while True:
        instances = {i["InstanceId"] for i in world.instances(states=("running",))}
        have = {iid for iid, row in containers.list_fleet(state.name).items() if row["state"] == "running"}
        booted = {iid for iid in have if _booted(state, iid)}
        if instances and instances <= booted:
            _say(f"{len(instances)} instance(s) running, each backed by a container")
            return
        counts = (len(booted & instances), len(instances))
        if counts != said or time.monotonic() - said_at >= progress.HEARTBEAT:
            _say(f"instances: {counts[0]} of {counts[1]} booted in their containers")
            said, said_at = counts, time.monotonic()
        if time.monotonic() > deadline:
            error = last_error(state.dir / "fleetd.log")
            raise TimeoutError(
                f"only {len(booted)} of {len(instances)} instances have a booted container after "
                f"{timeout:.0f}s; {f'fleetd last logged: {error}; ' if error else ''}see {state.dir / 'fleetd.log'}")
        time.sleep(1)


def last_error(log: Path) -> str | None:
    """fleetd's last ERROR line (without its timestamp), the likeliest reason a fleet is stuck."""
    try:
        lines = log.read_text(errors="replace").splitlines()
    except OSError:
        return None
    errors = [line.split(" ERROR ", 1)[1] for line in lines if " ERROR " in line]
    return errors[-1] if errors else None


def wait_callbacks(state: FleetState, timeout: float = 1800) -> None:
    """Until fleetd has no provisioning callback (a site.yml run for a new instance) running.

    Waits for a status fleetd wrote after this call began, so an instance whose container has
    just booted (and whose callback is about to start) is not missed."""
    since = time.time()
    deadline = time.monotonic() + timeout
    said = False
    while True:
        status = state.read_status()
        if status.get("time", 0) > since and not status.get("callbacks"):
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"fleetd's provisioning callbacks still running after {timeout:.0f}s: "
                               f"{', '.join(status.get('callbacks', []))}; see {state.dir / 'callbacks'}")
        if status.get("callbacks") and not said:
            _say(f"waiting for fleetd to converge new instance(s): {', '.join(status['callbacks'])}")
            said = True
        time.sleep(1)


def _booted(state: FleetState, iid: str) -> bool:
    name = containers.container_name(state.name, iid)
    out = containers.docker("exec", name, "test", "-s", f"/home/{containers.DEFAULT_USER}/.ssh/authorized_keys",
                            check=False)
    return out == "" and containers.docker("exec", name, "systemctl", "is-active", "ssh", check=False).strip() == "active"


def down(name: str | None = None) -> None:
    name = name or default_name()
    directory = FleetState.path_for(name)
    data = {}
    if (directory / "state.json").exists():
        data = FleetState.load(directory).data
    pidfile = directory / "fleetd.pid"
    if pidfile.exists():
        pid = pidfile.read_text().strip()
        if _alive(pid):
            os.kill(int(pid), signal.SIGTERM)
            for _ in range(100):
                if not _alive(pid):
                    break
                time.sleep(0.1)
    haproxy_pid = directory / "haproxy.pid"
    if haproxy_pid.exists() and _alive(haproxy_pid.read_text().split()[0]):
        os.kill(int(haproxy_pid.read_text().split()[0]), signal.SIGTERM)
    removed = 0
    for row in containers.list_fleet(name).values():
        containers.remove(row["name"])
        removed += 1
    containers.remove_network(data.get("network", f"ec2fleet-{name}"))
    containers.remove_network(data.get("public_network", f"ec2fleet-{name}-public"))
    if data.get("emulator_pid") and emulator._is_moto_process(int(data["emulator_pid"])):
        emulator._stop_pid(int(data["emulator_pid"]))
    for pidfile in emulator.state_dir().glob(f"moto-{data.get('emulator_port', 'none')}.json"):
        pidfile.unlink(missing_ok=True)
    gnupg = directory / "doubles" / "gnupg"
    if gnupg.exists():  # signing the doubles started a gpg-agent for that home
        subprocess.run(["gpgconf", "--homedir", str(gnupg), "--kill", "all"], capture_output=True)
    shutil.rmtree(directory, ignore_errors=True)
    _say(f"fleet {name} is down: {removed} container(s) removed, emulator and balancer stopped")

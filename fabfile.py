"""Ops commands (Fabric): `fab --list`, or through tools/fleet which sets up the toolchain first.

Local fleet (the default, no AWS account needed):
    fab up [--size 4] [--groups api:2:fixed,batch:3:tg=batch] [--no-converge]
                                         emulated AWS + containers, then playbooks/site.yml
    fab down                             remove every container and process `up` started
    fab env                              shell exports to use ansible/boto3 against it by hand

Any fleet (`--inventory inventory/production.ec2_fleet.yml` for a real one; default: local):
    fab status                           instance, AZ, ASG, lifecycle, target health, release
    fab ssh --host web-1                 interactive shell through the bastion
    fab run --group role_web --cmd 'uptime' [--sudo]
    fab logs --group role_web [--unit sampleapp] [--lines 50]
    fab converge [--playbook playbooks/site.yml] [--limit ...]
    fab smoke                            testinfra smoke tests of every host

SSH certificates (roles/common/README.md):
    fab known-hosts [--ca-public-key F]...   trust the fleet's host CA: its @cert-authority line(s)
                                             in known_hosts, for the fleet's VPC ranges
    fab sign-key [--key ~/.ssh/id_ed25519.pub] [--principals P] [--hours 4]
                                             the operator's key signed by the user CA for a few hours
"""

from __future__ import annotations

import getpass
import os
import shlex
import sys
import time
import urllib.request
from pathlib import Path

import yaml
from ansible_collections.ec2fleet.fleet.plugins.module_utils.ssh_ca import CertError
from fabric import task

from ec2fleet import known_hosts as known_hosts_file
from ec2fleet import ops, progress, user_certs
from ec2fleet.localfleet import control

REPO = Path(__file__).resolve().parent
LOCAL_INVENTORY = "inventory/local.ec2_fleet.yml"
LOCAL_GROUP_VARS = "inventory/group_vars/env_local.yml"
VENV_BIN = Path(sys.executable).parent


def _env_for(inventory: str) -> dict:
    """Environment for ansible/boto3: the local fleet's emulator when the inventory is local."""
    env = dict(os.environ)
    if Path(inventory).name == Path(LOCAL_INVENTORY).name:
        if not control.exists():
            raise SystemExit("the local fleet is not up: run `tools/fleet up` first")
        env.update(control.load().env())
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    env.setdefault("ANSIBLE_CONFIG", str(REPO / "ansible.cfg"))
    return env


def _inventory(inventory: str) -> ops.Inventory:
    env = _env_for(inventory)
    os.environ.update({k: v for k, v in env.items() if k.startswith(("AWS_", "EC2FLEET_"))})
    return ops.Inventory(inventory, env)


def _playbook(c, inventory: str, playbook: str, extra: str = "") -> None:
    env = _env_for(inventory)
    if sys.stdout.isatty():  # its output goes through a pipe now; keep a terminal's colours
        env.setdefault("ANSIBLE_FORCE_COLOR", "1")
    cmd = ["ansible-playbook", "-i", inventory, playbook, *shlex.split(extra)]
    progress.phase(f"fleet: converge: {shlex.join(cmd)}")
    code = progress.stream(cmd, cwd=REPO, env=env)
    progress.phase(f"fleet: {playbook} finished (exit {code})")
    if code:
        raise SystemExit(code)


@task(help={"size": f"web ASG size (1-50, default {control.DEFAULT_SIZE}: one per AZ)", "converge": "run playbooks/site.yml after (default yes)",
            "groups": "more ASGs beside web, comma-separated NAME:SIZE[:fixed][:tg=TARGET_GROUP] "
                      "(fixed: MinSize = desired; tg: a target group of its own, default web), "
                      "e.g. api:2:fixed,batch:3:tg=batch"})
def up(c, size=control.DEFAULT_SIZE, converge=True, groups=""):
    """Bring the local fleet up (emulated AWS + containers) and converge it with site.yml."""
    try:
        specs = control.parse_groups(groups)
    except ValueError as exc:
        raise SystemExit(f"--groups: {exc}") from exc
    if converge:
        _build_release(c, _local_default_release())
    try:
        state = control.up(size=int(size), groups=specs)
    except RuntimeError as exc:  # one line for what stopped it (docker, an old fleet...)
        raise SystemExit(f"up: {exc}") from exc
    if converge:
        # fleetd converges instances it launched into an already converged fleet; site.yml must
        # not run on a host at the same time (two apt runs on one host fail on the dpkg lock).
        control.wait_callbacks(state)
        _playbook(c, LOCAL_INVENTORY, "playbooks/site.yml")
        state.set_flag("converged")  # from now on, new instances are converged at boot by fleetd
    url = f"http://127.0.0.1:{state.data['lb_port']}/"
    print(f"\nload balancer: {url}  (bastion: ssh -i {state.key_path} -o UserKnownHostsFile={state.known_hosts_path} "
          f"admin@{state.data['bastion_public_ip']})")
    others = {tg: u for tg, u in control.lb_urls(state).items() if u != url}
    for tg, other in others.items():
        print(f"load balancer, target group {tg}: {other}")
    if converge:
        answer = _wait_http(url + "version", timeout=60)
        print(f"the app answers through the load balancer: {answer}")
        for tg, other in others.items():
            print(f"the app answers through target group {tg}: {_wait_http(other + 'version', timeout=60)}")


def _local_default_release() -> str:
    """The release site.yml installs on a fresh local fleet (inventory/group_vars/env_local.yml)."""
    settings = yaml.safe_load((REPO / LOCAL_GROUP_VARS).read_text()) or {}
    version = str(settings.get("site_default_app_version") or "")
    if not version:
        raise SystemExit(f"{LOCAL_GROUP_VARS} sets no site_default_app_version: nothing to install")
    return version


def _build_release(c, version: str) -> None:
    """Build the release artifact unless dist/ already holds it (tools/build-release keeps it)."""
    progress.phase(f"fleet: release {version}: tools/build-release {version}")
    with progress.heartbeat(f"fleet: building release {version}"), c.cd(str(REPO)):
        c.run(f"tools/build-release {shlex.quote(version)}", pty=False, echo=False, hide="out")


def _wait_http(url: str, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=3) as resp:
                return resp.read().decode().strip()
        except OSError as exc:
            last = str(exc)
            time.sleep(1)
    raise SystemExit(f"{url} did not answer within {timeout:.0f}s: {last}")


@task
def down(c):
    """Remove every container, the network, the balancer, fleetd and the emulator of the local fleet."""
    control.down()


@task
def env(c):
    """Print shell exports for using ansible, boto3 and the AWS CLI against the local fleet."""
    for key, value in control.load().env().items():
        print(f"export {key}={shlex.quote(value)}")
    # The project's toolchain (ansible-playbook, ansible-inventory, aws) first on PATH.
    print(f'export PATH={shlex.quote(str(VENV_BIN))}:"$PATH"')


@task(help={"inventory": f"inventory file (default {LOCAL_INVENTORY})",
            "watch": "refresh the table until Ctrl-C (to follow a rollout from a second terminal)",
            "interval": "seconds between refreshes with --watch (default 5)",
            "count": "with --watch, stop after this many refreshes (default: until Ctrl-C)"})
def status(c, inventory=LOCAL_INVENTORY, watch=False, interval=5, count=0):
    """Table of every instance: AZ, ASG, lifecycle state, target health, release version."""
    if not watch:
        inv = _inventory(inventory)
        print(ops.table(ops.status_rows(inv)))
        _print_groups(inv)
        return
    progress.interrupt_once()
    refreshes = 0
    try:
        while True:
            started = time.monotonic()
            # Re-read the inventory each time: instances come and go, lifecycle states change.
            inv = _inventory(inventory)
            rows = ops.status_rows(inv)
            if sys.stdout.isatty():
                print("\033[H\033[2J", end="")  # clear the screen, as watch(1) does
            print(f"{time.strftime('%H:%M:%S')}  {ops.status_summary(rows)}  "
                  f"(every {interval}s, Ctrl-C to stop)")
            print(ops.table(rows))
            _print_groups(inv)
            refreshes += 1
            if int(count) and refreshes >= int(count):
                return
            time.sleep(max(0.0, float(interval) - (time.monotonic() - started)))
    except KeyboardInterrupt:
        print()


def _print_groups(inv: ops.Inventory) -> None:
    """The Auto Scaling Groups under the host table: sizes, fixed or not, target groups."""
    groups = ops.group_rows(inv)
    if groups:
        print()
        print(ops.table(groups), flush=True)


@task(help={"host": "inventory hostname", "inventory": "inventory file"})
def ssh(c, host, inventory=LOCAL_INVENTORY):
    """Interactive shell on a host, through the bastion when it is in a private subnet."""
    code = ops.interactive(_inventory(inventory).select(host)[0])
    if code:
        raise SystemExit(code)


@task(help={"group": "group or host names, comma-separated", "cmd": "shell command", "sudo": "run with sudo",
            "inventory": "inventory file"})
def run(c, group, cmd, sudo=False, inventory=LOCAL_INVENTORY):
    """Run a command on every host of a group in parallel; exits non-zero if any host failed."""
    hosts = _inventory(inventory).select(group)
    results = ops.run_parallel(hosts, cmd, sudo=bool(sudo))
    failed = 0
    for name in sorted(results):
        code, out = results[name]
        failed += code != 0
        print(f"--- {name} (exit {code})")
        if out:
            print(out)
    print(f"{len(results) - failed} ok, {failed} failed")
    if failed:
        raise SystemExit(1)


@task(help={"group": "group or host names", "unit": "systemd unit (default sampleapp)", "lines": "lines per host",
            "inventory": "inventory file"})
def logs(c, group, unit="sampleapp", lines=50, inventory=LOCAL_INVENTORY):
    """Last lines of a unit's journal on every host of a group, prefixed by host."""
    hosts = _inventory(inventory).select(group)
    cmd = f"journalctl -u {shlex.quote(unit)} -n {int(lines)} --no-pager -o short-iso"
    for name, (code, out) in sorted(ops.run_parallel(hosts, cmd, sudo=True).items()):
        for line in out.splitlines() or [f"(exit {code}, no output)"]:
            print(f"{name} | {line}")


@task(help={"playbook": "playbook (default playbooks/site.yml)", "limit": "host pattern", "inventory": "inventory file"})
def converge(c, playbook="playbooks/site.yml", limit="", inventory=LOCAL_INVENTORY):
    """Run a playbook against the fleet with the project's settings."""
    _playbook(c, inventory, playbook, f"--limit {shlex.quote(limit)}" if limit else "")


@task(help={"inventory": "inventory file (default: the local fleet)"})
def smoke(c, inventory=LOCAL_INVENTORY):
    """Fleet smoke tests (testinfra, ansible backend, through the ec2_fleet inventory)."""
    env = _env_for(inventory)
    cmd = (f"{shlex.quote(sys.executable)} -m pytest tests/fleet -p no:cacheprovider -q "
           f"--hosts=ansible://all --ansible-inventory={shlex.quote(inventory)}")
    with c.cd(str(REPO)):
        c.run(cmd, env=env, pty=False)


def _is_local(inventory: str) -> bool:
    return Path(inventory).name == Path(LOCAL_INVENTORY).name


@task(iterable=["ca_public_key"],
      help={"inventory": f"inventory file (default {LOCAL_INVENTORY})",
            "ca_public_key": "host CA public key file; twice during a rotation (old and new). "
                             "Default on the local fleet: its own CA",
            "ranges": "address ranges, comma-separated CIDRs (default: the VPCs of the inventory's hosts, and "
                      "their public addresses and DNS names)",
            "names": "more host patterns, comma-separated (default i-*: hosts reached by instance id)",
            "file": "known_hosts file (default ~/.ssh/known_hosts; on the local fleet, its own)"})
def known_hosts(c, inventory=LOCAL_INVENTORY, ca_public_key=None, ranges="", names="i-*", file=""):
    """Trust the fleet's host CA: write its @cert-authority line(s) in known_hosts (nothing per host)."""
    local = _is_local(inventory)
    if local and not (ca_public_key or ranges or file):
        state = control.load()
        control.trust_host_ca(state)
        print(f"{state.known_hosts_path}: trusts the host CA {state.ssh_ca_dir / 'host_ca.pub'}")
        return
    if not ca_public_key:
        raise SystemExit("known-hosts: give the host CA's public key with --ca-public-key (twice during a rotation)")
    try:
        cas = [Path(path).expanduser().read_text().strip() for path in ca_public_key]
        cidrs = [r.strip() for r in ranges.split(",") if r.strip()]
        public = []
        if not cidrs:  # from the inventory: its VPCs, and the public addresses hosts are reached at
            hosts = list(_inventory(inventory).hosts.values())
            cidrs, public = ops.vpc_ranges(hosts), ops.public_addresses(hosts)
        name = Path(inventory).name.split(".")[0]
        lines = known_hosts_file.ca_lines(name, cidrs, names.split(",") + public, cas)
        target = Path(file or ("~/.ssh/known_hosts" if not local else control.load().known_hosts_path)).expanduser()
        changed = known_hosts_file.write(target, name, lines)
    except (OSError, CertError) as exc:
        raise SystemExit(f"known-hosts: {exc}") from exc
    print(f"{target}: {'updated' if changed else 'already up to date'}")
    for line in lines:
        print(f"  {line[:110]}...")


@task(help={"key": "public key to certify (default ~/.ssh/id_ed25519.pub); the certificate goes beside it",
            "principals": "comma-separated (default: every principal the policy allows you)",
            "hours": f"validity in hours (default {user_certs.DEFAULT_HOURS}, at most the policy's max_hours)",
            "identity": "your name in the policy (default: the local user)",
            "policy": "operators' policy file (default on the local fleet: its own)",
            "ca_key": "the user CA's private key file", "ca_ssm_parameter": "or its SSM SecureString parameter",
            "region": "region of that parameter", "inventory": f"inventory file (default {LOCAL_INVENTORY})"})
def sign_key(c, key="~/.ssh/id_ed25519.pub", principals="", hours=user_certs.DEFAULT_HOURS, identity="", policy="",
             ca_key="", ca_ssm_parameter="", region="", inventory=LOCAL_INVENTORY):
    """Sign your SSH key with the fleet's user CA for a few hours, with the principals you are allowed."""
    if _is_local(inventory) and not (policy or ca_key or ca_ssm_parameter):
        ca_dir = control.load().ssh_ca_dir
        policy, ca_key = str(ca_dir / "operators.yml"), str(ca_dir / "user_ca")
    if not policy:
        raise SystemExit("sign-key: give the operators' policy with --policy")
    try:
        grants = user_certs.load_policy(Path(policy))
        with user_certs.ca_key(ca_key, ca_ssm_parameter, region or None) as ca_path:
            issued = user_certs.issue(grants, identity or getpass.getuser(), Path(key), ca_path,
                                      [p.strip() for p in principals.split(",") if p.strip()], int(hours))
    except CertError as exc:
        raise SystemExit(f"sign-key: {exc}") from exc
    print(f"{issued['path']}: principals {', '.join(issued['principals'])}, valid until {issued['valid_before']}, "
          f"key id {issued['key_id']} (ssh uses it with its key)")

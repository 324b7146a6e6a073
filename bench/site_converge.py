#!/usr/bin/env python3
"""Converge speed of playbooks/site.yml on the local fleet: project settings vs stock Ansible.

    python bench/site_converge.py [--size 20] [--keep]

1. Brings the local fleet up with --size web instances (unless one of that size is up).
2. Times the first site.yml converge with the project's ansible.cfg (Mitogen's linear strategy,
   after playbooks/reach.yml on stock SSH).
3. Times the idempotent second run (changed=0 expected) with the project's ansible.cfg.
4. Times the same second run with the project's ansible.cfg but ANSIBLE_STRATEGY=linear (stock
   connections, every other project setting): what Mitogen adds on its own.
5. Times the same second run under stock Ansible settings: an ansible.cfg that only tells Ansible
   where the project's roles and plugins are (forks 5, no pipelining, Ansible's default
   ControlPersist 60s, no fact cache, implicit gathering, the linear strategy).
   Before every timed run the SSH control masters an earlier run left are closed, so no run
   rides on another's connections.

Prints a table with wall times, changed and failed counts and the speed-ups, and whether every
run was correct (exit 1 if not); the fleet stays up with --keep.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from ec2fleet.localfleet import control  # noqa: E402

VENV_BIN = Path(sys.executable).parent
STOCK_CFG = """[defaults]
collections_path = {repo}/.ansible/collections
host_key_checking = false

[inventory]
enable_plugins = ec2fleet.fleet.ec2_fleet
"""


def close_ssh_masters() -> None:
    """Every timed run opens its own SSH connections: a master a previous run left behind
    (ControlPersist; the project's sockets are ~/.ansible/tmp/cp-*, stock Ansible's ~/.ansible/cp/*)
    would otherwise serve the next one."""
    ansible_dir = Path.home() / ".ansible"
    for sock in [*(ansible_dir / "cp").glob("*"), *(ansible_dir / "tmp").glob("cp-*")]:
        subprocess.run(["ssh", "-O", "exit", "-o", f"ControlPath={sock}", "bench"], capture_output=True)


def run_site(state, cfg: Path, label: str, extra_env: dict | None = None) -> dict:
    env = {**os.environ, **state.env(), "ANSIBLE_CONFIG": str(cfg), "ANSIBLE_FORCE_COLOR": "0",
           "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}", **(extra_env or {})}
    close_ssh_masters()
    start = time.monotonic()
    proc = subprocess.run([str(VENV_BIN / "ansible-playbook"), "-i", "inventory/local.ec2_fleet.yml",
                           "playbooks/site.yml"], cwd=REPO, env=env, capture_output=True, text=True)
    wall = time.monotonic() - start
    log = REPO / "reports" / "bench" / f"site-{label.replace(' ', '_')}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text(proc.stdout + proc.stderr)
    recap = proc.stdout.split("PLAY RECAP", 1)[-1]
    changed = sum(int(n) for n in re.findall(r"changed=(\d+)", recap))
    failed = sum(int(n) for n in re.findall(r"failed=(\d+)", recap)) + sum(
        int(n) for n in re.findall(r"unreachable=(\d+)", recap))
    print(f"  {label}: {wall:.1f}s, changed={changed}, failed={failed}, rc={proc.returncode} (log {log})",
          flush=True)
    return {"label": label, "wall": wall, "changed": changed, "failed": failed, "rc": proc.returncode}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=20)
    parser.add_argument("--keep", action="store_true", help="leave the fleet up afterwards")
    args = parser.parse_args()

    for version in ("1.0.0",):
        subprocess.run([str(REPO / "tools" / "build-release"), version], cwd=REPO, check=True, capture_output=True)
    fresh = not control.exists() or control.load().data.get("size") != args.size
    if fresh and control.exists():
        control.down()
    start = time.monotonic()
    state = control.up(size=args.size)
    print(f"fleet of {args.size} web instances + bastion up in {time.monotonic() - start:.0f}s", flush=True)
    project_cfg = REPO / "ansible.cfg"
    results = []
    with tempfile.TemporaryDirectory() as scratch:
        stock_cfg = Path(scratch) / "ansible.cfg"
        stock_cfg.write_text(STOCK_CFG.format(repo=REPO))
        if fresh:
            results.append(run_site(state, project_cfg, "first converge (project settings)"))
        results.append(run_site(state, project_cfg, "second run (project settings)"))
        results.append(run_site(state, project_cfg, "second run (project, linear)", {"ANSIBLE_STRATEGY": "linear"}))
        results.append(run_site(state, stock_cfg, "second run (stock settings)"))
    state.set_flag("converged")

    by_label = {r["label"]: r for r in results}
    project = by_label["second run (project settings)"]
    linear = by_label["second run (project, linear)"]
    stock = by_label["second run (stock settings)"]
    # Correct: no run had a failed or unreachable host, and no second run changed anything.
    correct = all(r["failed"] == 0 and r["rc"] == 0 for r in results) and all(
        r["changed"] == 0 for r in results if r["label"].startswith("second run"))
    print()
    print(f"site.yml on {args.size} web instances + bastion ({os.cpu_count()} cores)")
    print(f"{'run':<36} {'wall s':>8} {'changed':>8} {'failed':>7}")
    for r in results:
        print(f"{r['label']:<36} {r['wall']:>8.1f} {r['changed']:>8} {r['failed']:>7}")
    print(f"\nsecond run, stock / project settings: {stock['wall'] / project['wall']:.2f}x (target >= 2x)")
    print(f"second run, project linear / project settings (Mitogen's share): {linear['wall'] / project['wall']:.2f}x")
    print(f"second run, stock / project linear (the other settings' share): {stock['wall'] / linear['wall']:.2f}x")
    print(f"correct (no failed or unreachable host, changed=0 on every second run): {'yes' if correct else 'NO'}")
    if not args.keep:
        control.down()
    return 0 if correct else 1


if __name__ == "__main__":
    sys.exit(main())

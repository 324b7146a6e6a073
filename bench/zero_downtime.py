#!/usr/bin/env python3
"""Zero-downtime rolling deploy on the local fleet, under continuous HTTP load.

    python bench/zero_downtime.py [--size 8] [--workers 4] [--keep]

1. Brings the local fleet up with --size web instances and converges it on release 1.0.0
   (reuses a fleet of that size that is already up and converged).
2. Starts --workers threads that send GET /version through the local load balancer
   (127.0.0.1 only), each request on a new connection, bounded in count and time.
3. Runs playbooks/deploy.yml -e app_version=2.0.0 while the load runs, then stops the load.
4. Prints requests sent and failed, the version mix over time, the total deploy time and, per
   batch, the time spent beyond the configured drain and health waits (the tool's own overhead),
   from the deploy's JSON report.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import Counter, defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from ec2fleet.localfleet import control  # noqa: E402

VENV_BIN = Path(sys.executable).parent
MAX_REQUESTS = 2_000_000
MAX_SECONDS = 3600


def env_of(state) -> dict:
    return {**os.environ, **state.env(), "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"), "ANSIBLE_FORCE_COLOR": "0",
            "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}"}


def playbook(state, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(VENV_BIN / "ansible-playbook"), "-i", "inventory/local.ec2_fleet.yml", *args],
                          cwd=REPO, env=env_of(state), capture_output=True, text=True)


class Load:
    """Bounded GET loop against one loopback URL; records (second, outcome) per request."""

    def __init__(self, url: str, workers: int):
        self.url = url
        self.workers = workers
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.samples: list[tuple[int, str]] = []
        self.errors: Counter = Counter()
        self.start = 0.0

    def worker(self) -> None:
        while not self.stop.is_set():
            second = int(time.monotonic() - self.start)
            try:
                with urllib.request.urlopen(self.url, timeout=10) as resp:
                    outcome = json.loads(resp.read())["version"] if resp.status == 200 else f"HTTP {resp.status}"
            except urllib.error.HTTPError as exc:
                outcome = f"HTTP {exc.code}"
            except (OSError, ValueError) as exc:
                outcome = f"error: {type(exc).__name__}"
            with self.lock:
                self.samples.append((second, outcome))
                if not outcome[0].isdigit():
                    self.errors[outcome] += 1
                if len(self.samples) >= MAX_REQUESTS or second >= MAX_SECONDS:
                    self.stop.set()

    def __enter__(self):
        self.start = time.monotonic()
        self.threads = [threading.Thread(target=self.worker, daemon=True) for _ in range(self.workers)]
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=15)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=8)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--batch-size", default="25%")
    parser.add_argument("--keep", action="store_true", help="leave the fleet up afterwards")
    args = parser.parse_args()
    if args.size < 8:
        parser.error("the zero-downtime benchmark needs at least 8 web instances")

    for version in ("1.0.0", "2.0.0"):
        subprocess.run([str(REPO / "tools" / "build-release"), version], cwd=REPO, check=True, capture_output=True)
    if control.exists() and control.load().data.get("size") != args.size:
        control.down()
    state = control.up(size=args.size)
    if not state.read_flag("converged"):
        print("converging the fleet on 1.0.0 (site.yml)...", flush=True)
        began = time.monotonic()
        proc = playbook(state, "playbooks/site.yml")
        print(f"converged in {time.monotonic() - began:.1f}s (rc={proc.returncode})", flush=True)
        if proc.returncode != 0:
            print(proc.stdout[-3000:])
            return 1
        state.set_flag("converged")
    # Start from 1.0.0 everywhere (a no-op when the fleet already runs it).
    proc = playbook(state, "playbooks/deploy.yml", "-e", "app_version=1.0.0", "-e", f"deploy_batch_size={args.batch_size}")
    if proc.returncode != 0:
        print(proc.stdout[-3000:])
        return 1

    url = f"http://127.0.0.1:{state.data['lb_port']}/version"
    print(f"load: {args.workers} workers on {url}; deploying 2.0.0 over {args.size} instances...", flush=True)
    with Load(url, args.workers) as load:
        time.sleep(3)  # a baseline before the deploy starts
        began = time.monotonic()
        deploy = playbook(state, "playbooks/deploy.yml", "-e", "app_version=2.0.0", "-e",
                          f"deploy_batch_size={args.batch_size}")
        deploy_seconds = time.monotonic() - began
        time.sleep(3)
    (REPO / "reports" / "bench").mkdir(parents=True, exist_ok=True)
    (REPO / "reports" / "bench" / "zero-downtime-deploy.log").write_text(deploy.stdout + deploy.stderr)

    reports = sorted((REPO / "reports" / "deploys").glob("deploy-sampleapp-*-2.0.0-*.json"), key=lambda p: p.stat().st_mtime)
    report = json.loads(reports[-1].read_text()) if reports else {}
    per_second: dict[int, Counter] = defaultdict(Counter)
    for second, outcome in load.samples:
        per_second[second // 10 * 10][outcome] += 1
    failed = sum(load.errors.values())

    print(f"\ndeploy: rc={deploy.returncode}, result={report.get('result', '?')}, {deploy_seconds:.1f}s wall")
    print(f"requests sent: {len(load.samples)}, failed: {failed}" + (f" {dict(load.errors)}" if failed else ""))
    print("\nversion mix over time (10 s buckets):")
    print(f"{'t (s)':>6}  {'1.0.0':>7} {'2.0.0':>7} {'failed':>7}")
    for bucket in sorted(per_second):
        counts = per_second[bucket]
        bad = sum(n for k, n in counts.items() if not k[0].isdigit())
        print(f"{bucket:>6}  {counts.get('1.0.0', 0):>7} {counts.get('2.0.0', 0):>7} {bad:>7}")
    print("\nbatches (overhead = batch time beyond the drain and health waits):")
    for batch in report.get("batches", []):
        hosts = ", ".join(h["host"] for h in batch["hosts"])
        print(f"  batch {batch['batch']}: {batch['state']}, {batch['seconds']:.1f}s, overhead "
              f"{batch['overhead_seconds'] if batch['overhead_seconds'] is not None else '-'}s  [{hosts}]")
    switched = [s for s, o in load.samples if o == "2.0.0"]
    print(f"\nfirst 2.0.0 response at t={min(switched) if switched else '-'}s; "
          f"last 1.0.0 response at t={max((s for s, o in load.samples if o == '1.0.0'), default='-')}s")
    if not args.keep:
        control.down()
    return 0 if deploy.returncode == 0 and failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())

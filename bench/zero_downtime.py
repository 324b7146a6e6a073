#!/usr/bin/env python3
"""Zero-downtime rolling deploys on the local fleet, under continuous HTTP load: staged against
unstaged, side by side in one run, then how long a scale-out takes to serve.

    python bench/zero_downtime.py [--size 20] [--workers 4] [--rounds 1] [--scale-out 2] [--keep]

1. Brings the local fleet up with --size web instances and converges it on release 1.0.0
   (reuses a fleet of that size that is already up and converged).
2. Runs --rounds pairs of deploys, alternating `deploy_stage=true` and `deploy_stage=false`, each
   to a new release (2.0.0, 3.0.0, ...: every deploy installs a release no host has), each while
   --workers threads send GET /version through the local balancer (127.0.0.1, a new connection
   per request).
3. Prints per mode: deploy wall time, per-host out-of-service seconds (median and max), host-
   seconds out of service, the tool's overhead per batch beyond the configured drain and health
   waits (median and max over batches), requests and failures; then the ratios.
4. Scales the web group out by --scale-out and prints each new instance's launch-to-InService
   and launch-to-serving-the-recorded-release times.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from ec2fleet.localfleet import containers, control  # noqa: E402
from ec2fleet.localfleet.load import Load  # noqa: E402

VENV_BIN = Path(sys.executable).parent


def env_of(state) -> dict:
    return {**os.environ, **state.env(), "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"), "ANSIBLE_FORCE_COLOR": "0",
            "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}"}


def playbook(state, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(VENV_BIN / "ansible-playbook"), "-i", "inventory/local.ec2_fleet.yml", *args],
                          cwd=REPO, env=env_of(state), capture_output=True, text=True)


def failed_hosts(output: str) -> list[str]:
    """The hosts a playbook's recap shows unreachable or failed."""
    return [host for host, unreachable, failed in
            re.findall(r"^(\S+)\s+: ok=\d+\s+changed=\d+\s+unreachable=(\d+)\s+failed=(\d+)", output, re.M)
            if unreachable != "0" or failed != "0"]


def converge(state) -> bool:
    """site.yml on the whole fleet, its log kept under reports/bench/; the hosts it failed get one
    more run (a converge at 20+ hosts on 2 cores has lost a host to a transient error), and the
    failures are printed, not only the recap."""
    logs = REPO / "reports" / "bench"
    logs.mkdir(parents=True, exist_ok=True)
    limit: list[str] = []
    for attempt in (1, 2):
        print(f"converging {'the fleet' if not limit else ', '.join(limit)} on 1.0.0 (site.yml)...", flush=True)
        began = time.monotonic()
        proc = playbook(state, "playbooks/site.yml", *(["--limit", ",".join(limit)] if limit else []))
        log = logs / f"converge-{attempt}.log"
        log.write_text(proc.stdout + proc.stderr)
        print(f"converged in {time.monotonic() - began:.1f}s (rc={proc.returncode}; log {log})", flush=True)
        if proc.returncode == 0:
            return True
        for line in proc.stdout.splitlines():
            if line.startswith(("fatal:", "failed:")) or "UNREACHABLE!" in line:
                print("  " + line[:400])
        limit = failed_hosts(proc.stdout)
        if not limit:
            break
    return False


def deploy_under_load(state, version: str, staged: bool, args) -> dict:
    url = f"http://127.0.0.1:{state.data['lb_port']}/version"
    with Load(url, args.workers) as load:
        time.sleep(2)  # a baseline before the deploy starts
        began = time.monotonic()
        proc = playbook(state, "playbooks/deploy.yml", "-e", f"app_version={version}", "-e",
                        f"deploy_batch_size={args.batch_size}", "-e", f"deploy_stage={str(staged).lower()}")
        seconds = time.monotonic() - began
        time.sleep(2)
    mode = "staged" if staged else "unstaged"
    (REPO / "reports" / "bench").mkdir(parents=True, exist_ok=True)
    (REPO / "reports" / "bench" / f"zero-downtime-{mode}-{version}.log").write_text(proc.stdout + proc.stderr)
    found = re.findall(r"report: (\S+\.json)", proc.stdout)
    report = json.loads(Path(found[-1]).read_text()) if found else {}
    hosts = [h for b in report.get("batches", []) for h in b["hosts"]]
    out = [float(h["seconds"]["total"]) for h in hosts if h.get("seconds", {}).get("total") is not None]
    overheads = [b["overhead_seconds"] for b in report.get("batches", []) if b.get("overhead_seconds") is not None]
    return {"mode": mode, "version": version, "rc": proc.returncode, "result": report.get("result", "?"),
            "seconds": seconds, "out_median": statistics.median(out) if out else None, "out_max": max(out, default=None),
            "host_seconds_out": sum(out), "overhead_median": statistics.median(overheads) if overheads else None,
            "overhead_max": max(overheads, default=None), "batches": len(report.get("batches", [])),
            "sent": load.sent, "failed": load.failed, "errors": dict(load.errors), "tail": proc.stdout[-3000:]}


def scale_out(state, count: int, timeout: float = 900) -> list[dict]:
    """Adds `count` web instances; per instance, seconds from SetDesiredCapacity to its instance
    running (the local fleet's container up) and to serving: the release recorded for new
    instances active and its /health answering with it (the bootstrap in docs/bootstrap.md done).
    The emulator marks instances InService and targets healthy at once, so neither is measured."""
    asg = state.clients("autoscaling")
    group = asg.describe_auto_scaling_groups(AutoScalingGroupNames=["web"])["AutoScalingGroups"][0]
    before = {i["InstanceId"] for i in group["Instances"]}
    recorded = state.clients("ssm").get_parameter(Name="/sampleapp/local/release")["Parameter"]["Value"]
    began = time.time()
    asg.set_desired_capacity(AutoScalingGroupName="web", DesiredCapacity=group["DesiredCapacity"] + count,
                             HonorCooldown=False)
    seen: dict[str, dict] = {}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        group = asg.describe_auto_scaling_groups(AutoScalingGroupNames=["web"])["AutoScalingGroups"][0]
        for inst in group["Instances"]:
            iid = inst["InstanceId"]
            if iid in before:
                continue
            entry = seen.setdefault(iid, {"instance": iid})
            name = containers.container_name(state.name, iid)
            if "running" not in entry and containers.docker(
                    "inspect", "-f", "{{.State.Running}}", name, check=False).strip() == "true":
                entry["running"] = time.time() - began
            if "running" in entry and "serving" not in entry:
                # The release helper's own health gate: 200 from /health with the recorded version.
                probe = subprocess.run(["docker", "exec", name, "/usr/local/sbin/sampleapp-release", "health", recorded,
                                        "--timeout", "1"], capture_output=True, timeout=30)
                if probe.returncode == 0:
                    entry["serving"] = time.time() - began
        if len(seen) == count and all("serving" in e for e in seen.values()):
            break
        time.sleep(1)
    asg.set_desired_capacity(AutoScalingGroupName="web", DesiredCapacity=len(before), HonorCooldown=False)
    return sorted(seen.values(), key=lambda e: e["instance"])


def _fmt(value, unit="s"):
    return "-" if value is None else f"{value:.1f}{unit}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=20)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--batch-size", default="25%")
    parser.add_argument("--rounds", type=int, default=1, help="pairs of deploys (staged, unstaged)")
    parser.add_argument("--scale-out", type=int, default=2, help="instances to add at the end (0: skip)")
    parser.add_argument("--keep", action="store_true", help="leave the fleet up afterwards")
    args = parser.parse_args()
    if args.size < 4:
        parser.error("the zero-downtime benchmark needs at least 4 web instances")

    versions = [f"{n}.0.0" for n in range(2, 2 + 2 * args.rounds)]
    for version in ["1.0.0", *versions]:
        subprocess.run([str(REPO / "tools" / "build-release"), version], cwd=REPO, check=True, capture_output=True)
    if control.exists() and control.load().data.get("size") != args.size:
        control.down()
    state = control.up(size=args.size)
    if not state.read_flag("converged"):
        if not converge(state):
            return 1
        state.set_flag("converged")

    runs = []
    for n, version in enumerate(versions):
        staged = n % 2 == 0
        print(f"deploying {version} ({'staged' if staged else 'unstaged'}) over {args.size} instances under load...",
              flush=True)
        run = deploy_under_load(state, version, staged, args)
        runs.append(run)
        print(f"  rc={run['rc']} {run['result']} in {run['seconds']:.1f}s; {run['sent']} requests, {run['failed']} failed",
              flush=True)
        if run["rc"] != 0:
            print(run["tail"])
            break

    print(f"\n{args.size} web instances, batches of {args.batch_size} after a canary, {args.workers} load workers")
    print(f"{'mode':<9} {'version':<8} {'wall':>8} {'out median':>11} {'out max':>8} {'host-s out':>11} "
          f"{'overhead/batch':>15} {'batches':>8} {'requests':>9} {'failed':>7}")
    for r in runs:
        print(f"{r['mode']:<9} {r['version']:<8} {_fmt(r['seconds']):>8} {_fmt(r['out_median']):>11} {_fmt(r['out_max']):>8} "
              f"{_fmt(r['host_seconds_out']):>11} {_fmt(r['overhead_median']) + ' / ' + _fmt(r['overhead_max']):>15} "
              f"{r['batches']:>8} {r['sent']:>9} {r['failed']:>7}")
    staged = [r for r in runs if r["mode"] == "staged" and r["rc"] == 0]
    unstaged = [r for r in runs if r["mode"] == "unstaged" and r["rc"] == 0]
    if staged and unstaged:
        def mean(rs, key):
            return statistics.mean(r[key] for r in rs)
        print(f"\nunstaged / staged: wall {mean(unstaged, 'seconds') / mean(staged, 'seconds'):.1f}x, "
              f"median out of service {mean(unstaged, 'out_median') / mean(staged, 'out_median'):.1f}x, "
              f"host-seconds out {mean(unstaged, 'host_seconds_out') / mean(staged, 'host_seconds_out'):.1f}x")

    if args.scale_out and all(r["rc"] == 0 for r in runs):
        print(f"\nscale-out by {args.scale_out}: seconds from SetDesiredCapacity")
        print(f"{'instance':<22} {'running':>10} {'serving':>10}")
        for entry in scale_out(state, args.scale_out):
            print(f"{entry['instance']:<22} {_fmt(entry.get('running')):>10} {_fmt(entry.get('serving')):>10}")
    if not args.keep:
        control.down()
    return 0 if runs and all(r["rc"] == 0 and r["failed"] == 0 for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Benchmark: ec2_fleet vs amazon.aws.aws_ec2 on one emulated fleet, side by side.

Builds a fleet in a moto server of its own (3 regions x 1,000 instances by default: per region a
bastion with a public address and Auto Scaling Groups, tags Name/Role/Env), writes equivalent
inventory files for both plugins (same regions, hostnames, keyed groups, compose; each plugin
at its defaults for hostvars), then times, for each plugin, uncached and with a warm cache:

  * ``ansible all -i FILE --list-hosts``  (the inventory load an operator waits for)
  * ``ansible-inventory -i FILE --list``  (the full dump)

with ``--runs`` runs each (median reported) and the peak RSS of the command. ec2_fleet is also
measured with ``full_description: true`` (every instance field in hostvars, like aws_ec2).

With ``--accounts N`` the fleet is built in N emulated accounts (moto keeps one backend per
account; each is reached through an assumed role), ``--per-region`` instances in each (account,
region). ec2_fleet reads them all from one file (``accounts:``); aws_ec2 takes one role per
file, so it gets one file per account, all given to the same command (``-i a -i b -i c``).

    . .venv/bin/activate
    python bench/inventory_vs_aws_ec2.py                   # 3 x 1000 instances, 3 runs
    python bench/inventory_vs_aws_ec2.py --per-region 100 --runs 1   # a quick look
    python bench/inventory_vs_aws_ec2.py --accounts 3 --regions 5 --per-region 667 --runs 1   # 10,005

Runtime at the defaults: 31 minutes measured on the shared 2-core machine (load average 11-21;
fleet build 1-2 minutes, uncached runs most of the rest). The emulator serialises every instance
on every call, so the uncached figures of both plugins include the same emulator cost.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO / "tests"))

import inventory_fleet  # noqa: E402

from ec2fleet.emulator import MotoServer  # noqa: E402

REGIONS = ["us-east-1", "us-west-2", "eu-west-1", "eu-central-1", "ap-southeast-2"]
# Emulated accounts of a multi-account fleet, each reached through this role.
ACCOUNTS = ["111111111111", "222222222222", "333333333333"]
TIME = shutil.which("time", path="/usr/bin:/bin") or "/usr/bin/time"  # GNU time (Debian package "time")


def inventory_configs(regions, cache_dir, accounts=()):
    """Equivalent configurations: same regions, hostnames, keyed groups and compose; with
    ``accounts``, one ec2_fleet file naming them all and one aws_ec2 file per account.
    Returns {label: {"uncached" | "warm": [(config, suffix), ...]}}: the files of one command."""
    fleet = {
        "plugin": "ec2fleet.fleet.ec2_fleet",
        "regions": regions,
        "hostnames": ["tag:Name", "instance-id"],
        "keyed_groups": [
            {"key": "ec2_tags.Role", "prefix": "tag_role"},
            {"key": "ec2_tags.Env", "prefix": "tag_env"},
            {"key": "ec2_availability_zone", "prefix": "zone"},
        ],
        "compose": {"ansible_host": "ec2_private_ip_address"},
    }
    aws_ec2 = {
        "plugin": "amazon.aws.aws_ec2",
        "regions": regions,
        "hostnames": ["tag:Name", "instance-id"],
        "filters": {"instance-state-name": "running"},  # ec2_fleet's default states
        "keyed_groups": [
            {"key": "tags.Role", "prefix": "tag_role"},
            {"key": "tags.Env", "prefix": "tag_env"},
            {"key": "placement.availability_zone", "prefix": "zone"},
        ],
        "compose": {"ansible_host": "private_ip_address"},
    }
    if accounts:
        fleet["accounts"] = [{"alias": f"a{n}", "assume_role_arn": inventory_fleet.role_arn(account)}
                             for n, account in enumerate(accounts, 1)]
        aws_ec2_files = [dict(aws_ec2, assume_role_arn=inventory_fleet.role_arn(account)) for account in accounts]
    else:
        aws_ec2_files = [aws_ec2]
    full = dict(fleet, full_description=True)
    variants = {}
    for label, configs, suffix in (
        ("aws_ec2", aws_ec2_files, "aws_ec2.yml"),
        ("ec2_fleet", [fleet], "ec2_fleet.yml"),
        ("ec2_fleet full", [full], "ec2_fleet.yml"),
    ):
        cache = {"cache": True, "cache_plugin": "ansible.builtin.jsonfile",
                 "cache_connection": str(cache_dir / label.replace(" ", "_")), "cache_timeout": 86400}
        variants[label] = {"uncached": [(dict(config, cache=False), suffix) for config in configs],
                           "warm": [(dict(config, **cache), suffix) for config in configs]}
    return variants


def timed_rss(cmd, env):
    """Wall time, peak RSS (MiB), stdout and CPU seconds (user+sys) of one command, which must
    succeed. GNU time runs it, so the peak is the command's own (a child forked from this
    process would start with this process's high-water mark)."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err, \
            tempfile.NamedTemporaryFile("r") as usage:
        start = time.perf_counter()
        proc = subprocess.run([TIME, "-f", "%M %U %S", "-o", usage.name, *cmd], env=env, cwd=REPO,
                              stdout=out, stderr=err, check=False)
        elapsed = time.perf_counter() - start
        out.seek(0)
        err.seek(0)
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}): {err.read().decode()[-2000:]}")
        max_kib, user, system = usage.read().split()[-3:]
        return elapsed, int(max_kib) / 1024, out.read(), float(user) + float(system)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--per-region", type=int, default=1000,
                        help="instances per region, in each account (default 1000)")
    parser.add_argument("--regions", type=int, default=3, choices=range(1, len(REGIONS) + 1))
    parser.add_argument("--accounts", type=int, default=1, choices=range(1, len(ACCOUNTS) + 1),
                        help="accounts (default 1: the emulator's own, no accounts option; 2-3: assumed roles)")
    parser.add_argument("--asgs", type=int, default=3, help="ASGs per region")
    parser.add_argument("--runs", type=int, default=3, help="timed runs per cell (default 3)")
    parser.add_argument("--json", help="also write the raw results here")
    args = parser.parse_args(argv)

    regions = REGIONS[: args.regions]
    accounts = ACCOUNTS[: args.accounts] if args.accounts > 1 else []
    # A SIGTERM still runs the cleanup below (the emulator is stopped by its PID).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    workdir = Path(tempfile.mkdtemp(prefix="ec2fleet-bench-"))
    server = MotoServer().start()
    try:
        env = {**os.environ, **server.env(), "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"),
               "AWS_CONFIG_FILE": os.devnull, "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
               "ANSIBLE_NOCOLOR": "1"}
        env.pop("AWS_PROFILE", None)
        os.environ.update(server.env())
        t0 = time.perf_counter()
        for n, account in enumerate(accounts or [None], 1):
            # Names start with the account's alias: no hostname collides across accounts.
            with inventory_fleet.in_account(account, server.endpoint_url) if account else contextlib.nullcontext():
                inventory_fleet.build_fleet(regions, args.per_region, asgs_per_region=args.asgs,
                                            endpoint_url=server.endpoint_url, prefix=f"a{n}" if account else "")
        total = args.per_region * len(regions) * max(len(accounts), 1)
        where = f"{', '.join(regions)}" + (f", {len(accounts)} accounts" if accounts else "")
        print(f"fleet: {total} instances in {where} built in {time.perf_counter() - t0:.0f}s", flush=True)

        variants = inventory_configs(regions, workdir / "cache", accounts)
        venv_bin = Path(sys.executable).parent

        def sources(files):
            return [arg for f in files for arg in ("-i", str(f))]

        measures = {
            "load (ansible all --list-hosts)": lambda fs: [str(venv_bin / "ansible"), "all", *sources(fs), "--list-hosts"],
            "ansible-inventory --list": lambda fs: [str(venv_bin / "ansible-inventory"), *sources(fs), "--list"],
        }
        results = {}
        for mode in ("uncached", "warm"):
            paths = {}
            for label, modes in variants.items():
                paths[label] = []
                for i, (config, suffix) in enumerate(modes[mode]):
                    path = workdir / f"{label.replace(' ', '_')}_{mode}_{i}.{suffix}"
                    path.write_text(json.dumps(config))  # JSON is YAML
                    paths[label].append(path)
                if mode == "warm":
                    timed_rss(measures["ansible-inventory --list"](paths[label]), env)  # fill the cache
            for measure, build in measures.items():
                samples = {label: [] for label in variants}
                # Runs interleave the plugins, so a change in the machine's load hits all alike.
                for _ in range(args.runs):
                    for label in variants:
                        elapsed, peak, out, cpu_s = timed_rss(build(paths[label]), env)
                        hosts = int(out.split(b"hosts (", 1)[1].split(b")", 1)[0]) if measure.startswith("load") else None
                        samples[label].append((elapsed, peak, len(out), cpu_s, hosts))
                        del out
                for label, runs in samples.items():
                    times = [r[0] for r in runs]
                    hosts, size = runs[-1][4], runs[-1][2]
                    result = {
                        "median_s": statistics.median(times), "runs_s": times,
                        "median_cpu_s": statistics.median(r[3] for r in runs),
                        "peak_rss_mib": max(r[1] for r in runs), "output_bytes": size, "hosts": hosts,
                    }
                    results[(label, mode, measure)] = result
                    print(f"  {label:15} {mode:8} {measure:34} median {result['median_s']:6.2f}s "
                          f"(cpu {result['median_cpu_s']:6.2f}s) peak {result['peak_rss_mib']:6.0f} MiB"
                          + (f" hosts {hosts}" if hosts else f" {size / 1e6:.1f} MB"), flush=True)
    finally:
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)

    print()
    shape = f"{len(regions)} regions" + (f" x {len(accounts)} accounts (aws_ec2: one file per account)" if accounts else "")
    print(f"ec2_fleet vs amazon.aws.aws_ec2, {total} instances, {shape}, median of {args.runs} runs")
    print("wall = elapsed seconds; cpu = user+sys seconds of the command itself (the emulator's time is")
    print("in wall only); peak = max RSS of the command; speed-up = aws_ec2 wall / ec2_fleet wall")
    header = (f"| {'mode':8} | {'measure':34} | {'aws_ec2 wall/cpu/peak':>24} | {'ec2_fleet wall/cpu/peak':>24} "
              f"| {'speed-up':>8} | {'fleet full wall/cpu/peak':>24} | {'speed-up':>8} |")
    print(header)
    print("|" + "|".join("-" * (len(c)) for c in header.split("|")[1:-1]) + "|")
    targets = {("uncached", "load"): 2, ("uncached", "ansible"): 2, ("warm", "load"): 10, ("warm", "ansible"): 5}
    verdicts = []
    lighter = []  # (mode, measure, ec2_fleet peak, aws_ec2 peak)
    for mode in ("uncached", "warm"):
        for measure in measures:
            a = results[("aws_ec2", mode, measure)]
            f = results[("ec2_fleet", mode, measure)]
            full = results[("ec2_fleet full", mode, measure)]

            def cell(r):
                return f"{r['median_s']:6.2f}s {r['median_cpu_s']:6.2f}s {r['peak_rss_mib']:4.0f}M"

            ratio = a["median_s"] / f["median_s"]
            ratio_full = a["median_s"] / full["median_s"]
            print(f"| {mode:8} | {measure:34} | {cell(a):>24} | {cell(f):>24} | {ratio:7.1f}x | {cell(full):>24} | {ratio_full:7.1f}x |")
            target = targets[(mode, measure.split()[0].split("-")[0])]
            verdicts.append((mode, measure, ratio, a["median_cpu_s"] / f["median_cpu_s"], target))
            lighter.append((mode, measure, f["peak_rss_mib"], a["peak_rss_mib"]))
    print()
    for mode, measure, ratio, cpu_ratio, target in verdicts:
        print(f"target {mode} {measure}: >= {target}x -> wall {ratio:.1f}x "
              f"{'met' if ratio >= target else 'NOT met'} (cpu {cpu_ratio:.1f}x)")
    heavier = [f"{mode} {measure} ({ours:.0f} vs {theirs:.0f} MiB)" for mode, measure, ours, theirs in lighter if ours >= theirs]
    print(f"target peak memory below aws_ec2's in every cell: {'met' if not heavier else 'NOT met: ' + ', '.join(heavier)}")
    if args.json:
        Path(args.json).write_text(json.dumps({" / ".join(k): v for k, v in results.items()}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The local load balancer's numbers in the emulator's CloudWatch, as an ALB publishes them.

STAND-IN for AWS behaviour moto lacks: an Application Load Balancer publishes `RequestCount`,
`HTTPCode_Target_5XX_Count` (per target group and load balancer) and `HTTPCode_ELB_5XX_Count`
(per load balancer) to the `AWS/ApplicationELB` namespace; moto publishes nothing. fleetd reads
HAProxy's counters from its stats socket and puts the same metrics, with the same dimensions, every
`period` seconds (AWS: 60 s), so production code (the `lb_metrics` module the deploy report uses)
reads them exactly as it reads an ALB's; the dimensions come from the same helper it uses.

With several target groups (one HAProxy frontend + backend each, named after the target group),
the per-target-group metrics are each group's own and the load balancer's are their sums.

HAProxy's counters restart from zero when a reload starts a new worker; a counter that goes down is
taken as a restart (the new value is the increase since).
"""

from __future__ import annotations

import csv
import io
import socket
import time
from datetime import UTC, datetime
from pathlib import Path

from ansible_collections.ec2fleet.fleet.plugins.module_utils.deploy import ALB_METRICS_NAMESPACE, cloudwatch_dimension


def read_counters(admin_socket: Path, frontend: str = "web", backend: str = "web") -> dict[str, int]:
    """Requests and 5xx answers so far, from HAProxy's `show stat` (CSV) on its stats socket."""
    return _counters(_show_stat(admin_socket), frontend, backend)


def read_all(admin_socket: Path) -> dict[str, dict[str, int]]:
    """read_counters() for every frontend that has a backend of the same name (one per target group)."""
    rows = _show_stat(admin_socket)
    names = {px for px, sv in rows if sv == "FRONTEND"} & {px for px, sv in rows if sv == "BACKEND"}
    return {name: _counters(rows, name, name) for name in sorted(names)}


def _show_stat(admin_socket: Path) -> dict[tuple[str, str], dict]:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(2)
        sock.connect(str(admin_socket))
        sock.sendall(b"show stat\n")
        chunks = []
        while True:
            data = sock.recv(65536)
            if not data:
                break
            chunks.append(data)
    text = b"".join(chunks).decode().lstrip("# ")
    return {(r["pxname"], r["svname"]): r for r in csv.DictReader(io.StringIO(text))}


def _counters(rows: dict[tuple[str, str], dict], frontend: str, backend: str) -> dict[str, int]:
    front = rows.get((frontend, "FRONTEND"), {})
    back = rows.get((backend, "BACKEND"), {})

    def number(row, key):
        try:
            return int(row.get(key) or 0)
        except ValueError:
            return 0

    return {"requests": number(front, "req_tot"), "frontend_5xx": number(front, "hrsp_5xx"),
            "target_5xx": number(back, "hrsp_5xx")}


class Publisher:
    """Accumulates counter increases and puts one datapoint per metric every `period` seconds.

    `tg_arn` is one target group's ARN (then `sample` takes read_counters()'s dict), or a mapping
    of HAProxy frontend/backend name -> target group ARN (then `sample` takes read_all()'s)."""

    KEYS = ("requests", "frontend_5xx", "target_5xx")

    def __init__(self, cloudwatch, lb_arn: str, tg_arn, period: float = 5.0, now=time.time):
        self.cloudwatch = cloudwatch
        self.lb = cloudwatch_dimension(lb_arn)
        self.single = isinstance(tg_arn, str)
        arns = {"web": tg_arn} if self.single else dict(tg_arn)
        self.tgs = {name: cloudwatch_dimension(arn) for name, arn in arns.items()}
        self.period = period
        self.now = now
        self.last: dict[str, dict[str, int]] = {}
        self.sums = {name: dict.fromkeys(self.KEYS, 0) for name in self.tgs}
        self.window_start = self.now()

    def sample(self, counters: dict) -> None:
        by_name = {"web": counters} if self.single else counters
        for name, values in by_name.items():
            if name not in self.sums:
                continue
            last = self.last.get(name)
            if last is not None:
                for key, value in values.items():
                    before = last.get(key, 0)
                    self.sums[name][key] += value - before if value >= before else value  # a reload restarts at 0
            self.last[name] = dict(values)

    def due(self) -> bool:
        return self.now() - self.window_start >= self.period

    def flush(self) -> dict[str, int]:
        """Puts the window's sums (zeros too: an idle period is a datapoint on AWS as well); returns
        the load balancer's totals."""
        stamp = datetime.fromtimestamp(self.window_start, tz=UTC)
        lb_only = [{"Name": "LoadBalancer", "Value": self.lb}]
        total = {key: sum(sums[key] for sums in self.sums.values()) for key in self.KEYS}
        data = []
        for name, sums in sorted(self.sums.items()):
            both = [{"Name": "TargetGroup", "Value": self.tgs[name]}, *lb_only]
            data += [
                {"MetricName": "RequestCount", "Dimensions": both, "Value": sums["requests"]},
                {"MetricName": "HTTPCode_Target_5XX_Count", "Dimensions": both, "Value": sums["target_5xx"]},
            ]
        data += [
            {"MetricName": "RequestCount", "Dimensions": lb_only, "Value": total["requests"]},
            {"MetricName": "HTTPCode_ELB_5XX_Count", "Dimensions": lb_only,
             "Value": max(0, total["frontend_5xx"] - total["target_5xx"])},
        ]
        for item in data:
            item.update(Timestamp=stamp, Unit="Count")
        for chunk in (data[i:i + 20] for i in range(0, len(data), 20)):
            self.cloudwatch.put_metric_data(Namespace=ALB_METRICS_NAMESPACE, MetricData=chunk)
        self.sums = {name: dict.fromkeys(self.KEYS, 0) for name in self.tgs}
        self.window_start = self.now()
        return total

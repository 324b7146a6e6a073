"""The local load balancer's numbers in the emulator's CloudWatch, as an ALB publishes them.

STAND-IN for AWS behaviour moto lacks: an Application Load Balancer publishes `RequestCount`,
`HTTPCode_Target_5XX_Count` (per target group and load balancer) and `HTTPCode_ELB_5XX_Count`
(per load balancer) to the `AWS/ApplicationELB` namespace; moto publishes nothing. fleetd reads
HAProxy's counters from its stats socket and puts the same metrics, with the same dimensions, every
`period` seconds (AWS: 60 s), so production code (the `lb_metrics` module the deploy report uses)
reads them exactly as it reads an ALB's; the dimensions come from the same helper it uses.

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
    rows = {(r["pxname"], r["svname"]): r for r in csv.DictReader(io.StringIO(text))}
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
    """Accumulates counter increases and puts one datapoint per metric every `period` seconds."""

    def __init__(self, cloudwatch, lb_arn: str, tg_arn: str, period: float = 5.0, now=time.time):
        self.cloudwatch = cloudwatch
        self.lb = cloudwatch_dimension(lb_arn)
        self.tg = cloudwatch_dimension(tg_arn)
        self.period = period
        self.now = now
        self.last: dict[str, int] | None = None
        self.sums = {"requests": 0, "frontend_5xx": 0, "target_5xx": 0}
        self.window_start = self.now()

    def sample(self, counters: dict[str, int]) -> None:
        if self.last is not None:
            for key, value in counters.items():
                before = self.last.get(key, 0)
                self.sums[key] += value - before if value >= before else value  # a reload restarts at 0
        self.last = dict(counters)

    def due(self) -> bool:
        return self.now() - self.window_start >= self.period

    def flush(self) -> dict[str, int]:
        """Puts the window's sums (zeros too: an idle period is a datapoint on AWS as well)."""
        stamp = datetime.fromtimestamp(self.window_start, tz=UTC)
        lb_only = [{"Name": "LoadBalancer", "Value": self.lb}]
        both = [{"Name": "TargetGroup", "Value": self.tg}, *lb_only]
        elb_5xx = max(0, self.sums["frontend_5xx"] - self.sums["target_5xx"])
        data = [
            {"MetricName": "RequestCount", "Dimensions": both, "Value": self.sums["requests"]},
            {"MetricName": "RequestCount", "Dimensions": lb_only, "Value": self.sums["requests"]},
            {"MetricName": "HTTPCode_Target_5XX_Count", "Dimensions": both, "Value": self.sums["target_5xx"]},
            {"MetricName": "HTTPCode_ELB_5XX_Count", "Dimensions": lb_only, "Value": elb_5xx},
        ]
        for item in data:
            item.update(Timestamp=stamp, Unit="Count")
        self.cloudwatch.put_metric_data(Namespace=ALB_METRICS_NAMESPACE, MetricData=data)
        sent = dict(self.sums)
        self.sums = {key: 0 for key in self.sums}
        self.window_start = self.now()
        return sent

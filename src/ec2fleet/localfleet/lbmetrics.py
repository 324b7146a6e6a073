"""The local load balancer's numbers in the emulator's CloudWatch, as an ALB publishes them.

STAND-IN for AWS behaviour moto lacks: an Application Load Balancer publishes, to the
`AWS/ApplicationELB` namespace, `RequestCount`, `HTTPCode_Target_5XX_Count`, `TargetResponseTime`,
`HealthyHostCount` and `UnHealthyHostCount` per target group and load balancer, and
`RequestCount`, `HTTPCode_ELB_5XX_Count` and `TargetResponseTime` per load balancer; moto publishes
nothing. fleetd puts the same metrics, with the same dimensions, every `period` seconds (AWS: 60 s),
so production code (the `lb_metrics` module the deploy report uses, CloudWatch alarms) reads them
exactly as it reads an ALB's; the dimensions come from the same helper it uses. Where the numbers
come from:

- requests and 5xx answers: HAProxy's counters, from its stats socket (`show stat`);
- response times: HAProxy's log of every request (`REQUEST_LOG_FORMAT`, sent to a UNIX datagram
  socket fleetd reads: `RequestLog`), field `%Tr`, the time from sending the request to the server
  until its response headers arrived, which is what an ALB's `TargetResponseTime` measures. Each
  window's times are put as `Values`/`Counts` (seconds, millisecond resolution), so the Average
  and the percentile statistics (p99) are those of the window's requests; a window without
  requests has no datapoint, as on AWS;
- healthy and unhealthy hosts: HAProxy's own health checks of the instances it sends traffic to
  (server status `UP` or `DOWN` in `show stat`), sampled every fleetd tick; each window puts the
  samples as `Values`/`Counts`, so Minimum, Maximum and Average mean what they mean on AWS.

With several target groups (one HAProxy frontend + backend each, named after the target group),
the per-target-group metrics are each group's own and the load balancer's are their sums (their
union, for response times).

HAProxy's counters restart from zero when a reload starts a new worker; a counter that goes down is
taken as a restart (the new value is the increase since).
"""

from __future__ import annotations

import csv
import io
import socket
import threading
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

from ansible_collections.ec2fleet.fleet.plugins.module_utils.deploy import ALB_METRICS_NAMESPACE, cloudwatch_dimension

# HAProxy's per-request log line (balancer.render's log-format): backend (the target group's short
# name), server (the instance id), status code, %Tr in milliseconds (-1: no response from the server).
REQUEST_LOG_FORMAT = "%b %s %ST %Tr"
VALUES_PER_DATUM = 150  # PutMetricData's limit on one member's Values

def read_counters(admin_socket: Path, frontend: str = "web", backend: str = "web") -> dict[str, int]:
    """Requests and 5xx answers so far, and the servers up and down now, from HAProxy's `show stat`
    (CSV) on its stats socket."""
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

    servers = [row.get("status") or "" for (px, sv), row in rows.items()
               if px == backend and sv not in ("FRONTEND", "BACKEND")]
    # "UP 1/2" is up with a failed check, "DOWN 1/2" down with a passed one; MAINT and "no check"
    # are neither (an ALB counts only targets its health checks judge).
    return {"requests": number(front, "req_tot"), "frontend_5xx": number(front, "hrsp_5xx"),
            "target_5xx": number(back, "hrsp_5xx"),
            "healthy": sum(status.startswith("UP") for status in servers),
            "unhealthy": sum(status.startswith("DOWN") for status in servers)}


class RequestLog:
    """Receives HAProxy's per-request log lines (REQUEST_LOG_FORMAT) on a UNIX datagram socket,
    in a thread of its own (HAProxy does not wait for a reader: a full socket loses lines), and
    keeps each backend's response times (milliseconds -> count) until drained."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.unlink(missing_ok=True)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(self.path))
        self.sock.settimeout(0.5)
        self.lock = threading.Lock()
        self.times: dict[str, Counter] = {}
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._receive, name="haproxy-request-log", daemon=True)
        self.thread.start()

    def _receive(self) -> None:
        while not self.stopping.is_set():
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            self.add(data.decode(errors="replace"))

    def add(self, line: str) -> None:
        parts = line.split()
        if len(parts) != 4:
            return
        try:
            millis = int(parts[3])
        except ValueError:
            return
        if millis >= 0:  # -1: the server sent no response (no TargetResponseTime on AWS either)
            with self.lock:
                self.times.setdefault(parts[0], Counter())[millis] += 1

    def drain(self) -> dict[str, Counter]:
        """Response times received since the last drain, by backend."""
        with self.lock:
            times, self.times = self.times, {}
        return times

    def close(self) -> None:
        self.stopping.set()
        self.thread.join(2)
        self.sock.close()
        self.path.unlink(missing_ok=True)


def distribution(name: str, dimensions: list[dict], counts: Counter, unit: str, scale: float = 1.0) -> list[dict]:
    """PutMetricData members holding a window's values with their counts (at most 150 values each)."""
    pairs = sorted(counts.items())
    return [{"MetricName": name, "Dimensions": dimensions, "Unit": unit,
             "Values": [value * scale for value, _ in pairs[i:i + VALUES_PER_DATUM]],
             "Counts": [float(count) for _, count in pairs[i:i + VALUES_PER_DATUM]]}
            for i in range(0, len(pairs), VALUES_PER_DATUM)]


class Publisher:
    """Accumulates counter increases, host counts and response times, and puts one datapoint per
    metric every `period` seconds (windows aligned to multiples of it, as CloudWatch's periods are).

    `tg_arn` is one target group's ARN (then `sample` takes read_counters()'s dict), or a mapping
    of HAProxy frontend/backend name -> target group ARN (then `sample` takes read_all()'s)."""

    KEYS = ("requests", "frontend_5xx", "target_5xx")
    HOSTS = (("healthy", "HealthyHostCount"), ("unhealthy", "UnHealthyHostCount"))

    def __init__(self, cloudwatch, lb_arn: str, tg_arn, period: float = 5.0, now=time.time):
        self.cloudwatch = cloudwatch
        self.lb = cloudwatch_dimension(lb_arn)
        self.single = isinstance(tg_arn, str)
        arns = {"web": tg_arn} if self.single else dict(tg_arn)
        self.tgs = {name: cloudwatch_dimension(arn) for name, arn in arns.items()}
        self.period = period
        self.now = now
        self.last: dict[str, dict[str, int]] = {}
        self._new_window()

    def _new_window(self) -> None:
        self.sums = {name: dict.fromkeys(self.KEYS, 0) for name in self.tgs}
        self.hosts = {name: {key: Counter() for key, _ in self.HOSTS} for name in self.tgs}
        self.times: dict[str, Counter] = {name: Counter() for name in self.tgs}
        now = self.now()
        self.window_start = now - now % self.period

    def sample(self, counters: dict) -> None:
        by_name = {"web": counters} if self.single else counters
        for name, values in by_name.items():
            if name not in self.sums:
                continue
            last = self.last.get(name)
            if last is not None:
                for key in self.KEYS:
                    value, before = values.get(key, 0), last.get(key, 0)
                    self.sums[name][key] += value - before if value >= before else value  # a reload restarts at 0
            self.last[name] = dict(values)
            for key, _ in self.HOSTS:
                if key in values:
                    self.hosts[name][key][values[key]] += 1

    def record_times(self, times: dict[str, Counter]) -> None:
        """Response times (milliseconds -> count) by HAProxy backend name, as RequestLog.drain() gives them."""
        for name, counts in times.items():
            if name in self.times:
                self.times[name].update(counts)

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
                {"MetricName": "RequestCount", "Dimensions": both, "Value": sums["requests"], "Unit": "Count"},
                {"MetricName": "HTTPCode_Target_5XX_Count", "Dimensions": both, "Value": sums["target_5xx"],
                 "Unit": "Count"},
                *distribution("TargetResponseTime", both, self.times[name], "Seconds", 0.001),
            ]
            for key, metric in self.HOSTS:
                data += distribution(metric, both, self.hosts[name][key], "Count")
        data += [
            {"MetricName": "RequestCount", "Dimensions": lb_only, "Value": total["requests"], "Unit": "Count"},
            {"MetricName": "HTTPCode_ELB_5XX_Count", "Dimensions": lb_only,
             "Value": max(0, total["frontend_5xx"] - total["target_5xx"]), "Unit": "Count"},
            *distribution("TargetResponseTime", lb_only, sum(self.times.values(), Counter()), "Seconds", 0.001),
        ]
        for item in data:
            item["Timestamp"] = stamp
        for chunk in (data[i:i + 20] for i in range(0, len(data), 20)):
            self.cloudwatch.put_metric_data(Namespace=ALB_METRICS_NAMESPACE, MetricData=chunk)
        self._new_window()
        return total

"""The local load balancer: HAProxy on 127.0.0.1 that follows the target groups.

One HAProxy process stands for the fleet's one ALB: each of the ALB's listeners (port 80 to the
target group `web`; 8081, ... to any other target group) is a frontend bound to its own port on
127.0.0.1 (state.json `lb_ports`), with a backend of that target group's instances. Frontend and
backend are named after the target group (`web`, ...), which is what lbmetrics reads.

An instance gets traffic only while, in the emulator, it is registered in the target group with
state `healthy`, it is `running` and, if it belongs to an Auto Scaling Group, its lifecycle state
is `InService`. The last two stand in for AWS behaviour moto lacks: on AWS, entering Standby or
being terminated by the ASG deregisters the instance from the ASG's target groups; moto leaves it
registered. (fleetd also holds back a newly launched instance until it has passed its health
check: standins.InitialHealth.)

Changes are applied with a graceful reload (master-worker mode, SIGUSR2): the old worker
finishes the requests it holds while the new one takes new connections, which is what
connection draining gives on AWS. HAProxy also health-checks `/health` itself, as the ALB does.

Every request is logged (lbmetrics.REQUEST_LOG_FORMAT: target group, instance, status, response
time) to a UNIX datagram socket in the state directory that fleetd reads (lbmetrics.RequestLog):
the response times an ALB publishes as `TargetResponseTime`.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from ec2fleet.localfleet.lbmetrics import REQUEST_LOG_FORMAT

# HAProxy refuses a log socket path longer than 97 bytes (the kernel's cap for any UNIX socket is
# 108), and a state directory in a deep checkout or in pytest's temporary tree is longer than that.
SOCKET_PATH_MAX = 97


def socket_dir(state_dir: Path) -> Path:
    """Where the balancer's sockets are reached: the state directory itself, or, when its path is
    too long for a socket's, a short link to it in the temporary directory."""
    if len(str(state_dir / "haproxy-requests.sock")) <= SOCKET_PATH_MAX:
        return state_dir
    target = state_dir.resolve()
    link = Path(tempfile.gettempdir()) / f"ec2fleet-{hashlib.sha256(str(target).encode()).hexdigest()[:12]}"
    staged = link.with_name(f"{link.name}.{os.getpid()}")
    staged.unlink(missing_ok=True)
    staged.symlink_to(target, target_is_directory=True)
    staged.replace(link)  # atomic; fails loudly if something other than a link holds the name
    return link


def desired_backends(elbv2, autoscaling, ec2_instances: dict[str, dict], target_group_arn: str) -> dict[str, str]:
    """instance id -> private IP of the instances that should receive traffic now."""
    health = elbv2.describe_target_health(TargetGroupArn=target_group_arn)["TargetHealthDescriptions"]
    healthy = [d["Target"]["Id"] for d in health if d["TargetHealth"]["State"] == "healthy"]
    lifecycle = {}
    if healthy:
        for chunk in (healthy[i:i + 50] for i in range(0, len(healthy), 50)):
            for inst in autoscaling.describe_auto_scaling_instances(InstanceIds=chunk)["AutoScalingInstances"]:
                lifecycle[inst["InstanceId"]] = inst["LifecycleState"]
    backends = {}
    for iid in healthy:
        inst = ec2_instances.get(iid)
        if inst is None or inst["State"]["Name"] != "running":
            continue  # moto keeps terminated instances registered; AWS drops them
        if iid in lifecycle and lifecycle[iid] != "InService":
            continue
        backends[iid] = inst["PrivateIpAddress"]
    return backends


def listener(bind: str, backends: dict[str, str], port: int = 80) -> dict:
    """One frontend: where it listens, and the instances (id -> private IP) it sends to, on `port`."""
    return {"bind": bind, "port": port, "backends": dict(backends)}


# Response header naming the target that answered (local fleet only).
TARGET_HEADER = "X-Local-Target"


def render(listeners: dict[str, dict], admin_socket: Path, request_log: Path | None = None) -> str:
    """HAProxy's config: one frontend + backend per target group (short name -> listener()); with
    `request_log`, every request logged there (raw lines, REQUEST_LOG_FORMAT)."""
    logging = [f"    log {request_log} len 1024 format raw local0 info"] if request_log else []
    log_format = ["    log global", f'    log-format "{REQUEST_LOG_FORMAT}"'] if request_log else ["    option httplog"]
    lines = [
        "# Written by the local fleet's balancer (ec2fleet.localfleet.balancer); do not edit.",
        "global",
        "    maxconn 4096",
        f"    stats socket {admin_socket} mode 600 level admin",
        *logging,
        "    hard-stop-after 60s",
        "defaults",
        "    mode http",
        *log_format,
        "    timeout connect 2s",
        "    timeout client 30s",
        "    timeout server 30s",
        "    timeout http-keep-alive 2s",
    ]
    for name, spec in sorted(listeners.items(), key=lambda kv: (kv[0] != "web", kv[0])):
        lines += [
            f"frontend {name}",
            f"    bind {spec['bind']}",
            f"    default_backend {name}",
            f"backend {name}",
            "    balance roundrobin",
            "    option httpchk GET /health",
            "    http-check expect status 200",
            # Which instance answered (the server's name is its id): tests and the benchmark tell a
            # faulty host's answers from the others'. The ALB adds no such header; nothing else reads it.
            f"    http-response set-header {TARGET_HEADER} %s",
        ]
        for iid, ip in sorted(spec["backends"].items()):
            lines.append(f"    server {iid} {ip}:{spec.get('port', 80)} check inter 1s fall 2 rise 1")
    return "\n".join(lines) + "\n"


class Balancer:
    def __init__(self, state_dir: Path):
        self.dir = state_dir
        self.config = state_dir / "haproxy.cfg"
        self.pidfile = state_dir / "haproxy.pid"
        self.sockets = socket_dir(state_dir)
        self.socket = self.sockets / "haproxy.sock"
        self.request_log = self.sockets / "haproxy-requests.sock"
        self.current: dict[str, dict] | None = None

    def _pid(self) -> int | None:
        try:
            pid = int(self.pidfile.read_text().split()[0])
            os.kill(pid, 0)
            return pid
        except (OSError, ValueError, IndexError):
            return None

    def apply(self, listeners: dict[str, dict]) -> bool:
        """Write the config and (re)load HAProxy when a listener or backend set changed; True if it did."""
        if listeners == self.current and self._pid():
            return False
        text = render(listeners, self.socket, self.request_log)
        tmp = self.config.with_suffix(".new")
        tmp.write_text(text)
        check = subprocess.run(["haproxy", "-c", "-f", str(tmp)], capture_output=True, text=True)
        if check.returncode != 0:  # not -q: it silences the reason too
            raise RuntimeError(f"haproxy rejected the generated config: {check.stderr.strip()}")
        tmp.replace(self.config)
        pid = self._pid()
        if pid is None:
            subprocess.run(["haproxy", "-W", "-D", "-f", str(self.config), "-p", str(self.pidfile)], check=True)
        else:
            os.kill(pid, signal.SIGUSR2)  # master-worker graceful reload
        self.current = {name: listener(spec["bind"], spec["backends"], spec.get("port", 80))
                        for name, spec in listeners.items()}
        return True

    def stop(self) -> None:
        pid = self._pid()
        if pid:
            os.kill(pid, signal.SIGTERM)
            for _ in range(50):
                try:
                    os.kill(pid, 0)
                except OSError:
                    break
                time.sleep(0.1)
        self.pidfile.unlink(missing_ok=True)
        if self.sockets != self.dir:
            self.sockets.unlink(missing_ok=True)

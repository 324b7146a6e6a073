"""AWS API emulator harness: one moto server on 127.0.0.1, started and stopped by its own PID.

The pytest fixture (tests/conftest.py), the local fleet and the ``ec2fleet-emulator`` command
all use this module, so there is one way to start, find and stop the emulator.

Every server started here leaves a PID file under the state directory naming the server and its
owner (the process that started it, or "detached" for long-lived servers such as the local
fleet's). ``clean_stale()`` stops the servers whose owner is gone, so a test killed midway leaves
nothing running for the next run, while another live test session or the local fleet keeps its
server. ``clean_stale(everything=True)`` (``ec2fleet-emulator stop``) stops them all. A PID is
signalled only while it still belongs to a moto server.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

DEFAULT_REGION = "us-east-1"
# Dummy credentials: moto accepts anything, and real ones must never reach the emulator.
DUMMY_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
}


def state_dir() -> Path:
    """Where PID files live; one per running server, named after its port."""
    base = os.environ.get("EC2FLEET_STATE_DIR") or os.path.join(
        os.environ.get("XDG_RUNTIME_DIR") or "/tmp", "ec2fleet"
    )
    path = Path(base) / "emulator"
    path.mkdir(parents=True, exist_ok=True)
    return path


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def _is_moto_process(pid: int) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
    except OSError:
        return False
    return b"moto" in cmdline


def _stop_pid(pid: int, timeout: float = 10.0) -> None:
    """SIGTERM the server's process group, then SIGKILL if it does not go."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            return
        except PermissionError:
            os.kill(pid, sig)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                # Reap it if it is our child; otherwise just probe for it.
                done, _ = os.waitpid(pid, os.WNOHANG)
                if done:
                    return
            except ChildProcessError:
                if not Path(f"/proc/{pid}").exists():
                    return
            time.sleep(0.05)


def _owner_alive(owner) -> bool:
    if owner == "detached":
        return True
    try:
        os.kill(int(owner), 0)
    except (ProcessLookupError, ValueError, TypeError):
        return False
    except PermissionError:
        return True
    return True


def clean_stale(everything: bool = False, port: int | None = None) -> list[int]:
    """Stop moto servers whose owner is gone (a killed run); with everything=True, all of them
    (or only the one on `port`)."""
    stopped = []
    for pidfile in state_dir().glob(f"moto-{port}.json" if port else "moto-*.json"):
        try:
            info = json.loads(pidfile.read_text())
            pid = int(info["pid"])
        except (OSError, ValueError, KeyError):
            pidfile.unlink(missing_ok=True)
            continue
        if not everything and _owner_alive(info.get("owner")) and _is_moto_process(pid):
            continue
        if _is_moto_process(pid):
            _stop_pid(pid)
            stopped.append(pid)
        pidfile.unlink(missing_ok=True)
        shutil.rmtree(state_dir() / f"console-{info.get('port')}", ignore_errors=True)
    return stopped


@dataclass
class MotoServer:
    """A moto server process on 127.0.0.1.

    >>> with MotoServer() as server:
    ...     boto3.client("ec2", endpoint_url=server.endpoint_url, ...)
    """

    host: str = "127.0.0.1"
    port: int = 0
    region: str = DEFAULT_REGION
    pid: int | None = None
    log_path: Path | None = None

    @property
    def endpoint_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def pidfile(self) -> Path:
        return state_dir() / f"moto-{self.port}.json"

    @property
    def console_dir(self) -> Path:
        """Where instances' console output is written (<dir>/<instance id>) for GetConsoleOutput."""
        return state_dir() / f"console-{self.port}"

    def env(self) -> dict[str, str]:
        """Environment for boto3, botocore and Ansible's AWS modules to use the emulator."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint_url,
            "AWS_DEFAULT_REGION": self.region,
            "AWS_REGION": self.region,
            **DUMMY_CREDENTIALS,
        }

    def start(self, timeout: float = 30.0, detach: bool = False) -> MotoServer:
        if not self.port:
            self.port = free_port(self.host)
        self.log_path = state_dir() / f"moto-{self.port}.log"
        log = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child process
        # moto's server with a constant-time tag lookup (ec2fleet/moto_server.py says why); the
        # child finds this package even when the caller put it on sys.path by hand.
        package_root = str(Path(__file__).resolve().parents[1])
        child_env = {**os.environ, "PYTHONPATH": os.pathsep.join(
            p for p in (package_root, os.environ.get("PYTHONPATH")) if p),
            "EC2FLEET_CONSOLE_DIR": str(self.console_dir)}
        self.console_dir.mkdir(mode=0o700, exist_ok=True)
        proc = subprocess.Popen(
            [sys.executable, "-m", "ec2fleet.moto_server", "-H", self.host, "-p", str(self.port)],
            env=child_env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            # Its own process group: stopping it never touches the caller, and a detached
            # server outlives the command that started it.
            start_new_session=True,
            close_fds=True,
        )
        log.close()
        self.pid = proc.pid
        owner = "detached" if detach else os.getpid()
        self.pidfile.write_text(
            json.dumps({"pid": self.pid, "port": self.port, "host": self.host, "owner": owner})
        )
        try:
            self.wait_ready(timeout, proc)
        except Exception:
            self.stop()
            raise
        if detach:
            # Forget the child so Python does not warn about it; the PID file keeps track.
            proc.returncode = 0
        return self

    def wait_ready(self, timeout: float, proc: subprocess.Popen | None = None) -> None:
        deadline = time.monotonic() + timeout
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            if proc is not None and proc.poll() is not None:
                raise RuntimeError(
                    f"moto server exited with {proc.returncode} before answering; see {self.log_path}"
                )
            try:
                with urllib.request.urlopen(f"{self.endpoint_url}/moto-api/data.json", timeout=2) as resp:
                    if resp.status == 200:
                        return
            except (urllib.error.URLError, OSError) as exc:
                last_error = exc
            time.sleep(0.1)
        raise TimeoutError(f"moto server on {self.endpoint_url} did not answer in {timeout:.0f}s: {last_error}")

    def reset(self) -> None:
        """Drop every resource the emulator holds (moto's own reset API)."""
        req = urllib.request.Request(f"{self.endpoint_url}/moto-api/reset", method="POST")
        with urllib.request.urlopen(req, timeout=10):
            pass

    def stop(self) -> None:
        if self.pid is not None and _is_moto_process(self.pid):
            _stop_pid(self.pid)
        self.pid = None
        self.pidfile.unlink(missing_ok=True)
        shutil.rmtree(self.console_dir, ignore_errors=True)

    def __enter__(self) -> MotoServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def running_servers() -> list[dict]:
    servers = []
    for pidfile in sorted(state_dir().glob("moto-*.json")):
        try:
            info = json.loads(pidfile.read_text())
        except (OSError, ValueError):
            continue
        if _is_moto_process(int(info.get("pid", 0))):
            servers.append(info)
    return servers


def _exports(server: MotoServer) -> str:
    return "".join(f"export {key}={value}\n" for key, value in server.env().items())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="ec2fleet-emulator",
        description="Start, stop or use the AWS API emulator (moto server on 127.0.0.1).",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    start = sub.add_parser("start", help="start a server in the background; prints shell exports")
    start.add_argument("--port", type=int, default=0, help="port (default: a free one)")
    stop = sub.add_parser("stop", help="stop every server this harness started, detached ones too (by PID)")
    stop.add_argument("--port", type=int, help="only the server on this port")
    sub.add_parser("status", help="list running servers")
    run = sub.add_parser("run", help="run a command with a fresh server, then stop it")
    run.add_argument("cmd", nargs=argparse.REMAINDER, help="command (after --)")
    args = parser.parse_args(argv)

    if args.command == "start":
        server = MotoServer(port=args.port).start(detach=True)
        sys.stdout.write(_exports(server))
        return 0
    if args.command == "stop":
        stopped = clean_stale(everything=True, port=args.port)
        print(f"stopped {len(stopped)} emulator process(es)")
        return 0
    if args.command == "status":
        servers = running_servers()
        for info in servers:
            print(f"pid {info['pid']}  http://{info['host']}:{info['port']}")
        if not servers:
            print("no emulator running")
        return 0
    cmd = [c for c in args.cmd if c != "--"] if args.cmd[:1] == ["--"] else args.cmd
    if not cmd:
        parser.error("run needs a command, e.g.: ec2fleet-emulator run -- pytest tests")
    with MotoServer() as server:
        env = {**os.environ, **server.env()}
        return subprocess.call(cmd, env=env)


if __name__ == "__main__":
    sys.exit(main())

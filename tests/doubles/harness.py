"""Test plumbing shared by the agent tests: run a playbook, serve files on loopback, run a
systemd container. Nothing here stands in for an AWS piece; see README.md for the doubles."""

from __future__ import annotations

import contextlib
import functools
import http.server
import json
import os
import subprocess
import sys
import threading
import uuid
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SYSTEMD_FLAGS = [
    "--cap-add", "SYS_ADMIN", "--security-opt", "seccomp=unconfined", "--cgroupns=host",
    "-v", "/sys/fs/cgroup:/sys/fs/cgroup:rw", "--tmpfs", "/run", "--tmpfs", "/run/lock", "--tmpfs", "/tmp",
]


@dataclass
class PlaybookRun:
    rc: int
    output: str

    def recap(self, host: str) -> dict[str, int]:
        """The PLAY RECAP counters of HOST (summed over plays)."""
        totals: dict[str, int] = {}
        for line in self.output.splitlines():
            if line.startswith(host + " ") and "ok=" in line:
                for pair in line.split(":", 1)[1].split():
                    key, value = pair.split("=")
                    totals[key] = totals.get(key, 0) + int(value)
        return totals


def run_playbook(playbook: Path | str, *args: str, inventory: str | None = None,
                 extra_vars: dict | None = None, env: dict | None = None, timeout: int = 900) -> PlaybookRun:
    """ansible-playbook from the repo root (its ansible.cfg), output captured."""
    command = [str(Path(sys.executable).with_name("ansible-playbook")), str(playbook)]
    if inventory:
        command += ["-i", inventory]
    if extra_vars:
        command += ["-e", json.dumps(extra_vars)]
    command += list(args)
    full_env = dict(os.environ, ANSIBLE_FORCE_COLOR="0", ANSIBLE_NOCOLOR="1", **(env or {}))
    done = subprocess.run(command, cwd=REPO, env=full_env, capture_output=True, text=True, timeout=timeout)
    return PlaybookRun(done.returncode, done.stdout + done.stderr)


@dataclass
class LoopbackServer:
    """A static HTTP server on 127.0.0.1 that records the paths it served."""

    root: Path
    url: str = ""
    requests: list[str] = field(default_factory=list)


@contextlib.contextmanager
def serve_directory(root: Path):
    server_info = LoopbackServer(Path(root))

    class Handler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, fmt, *args):
            server_info.requests.append(self.path)

    handler = functools.partial(Handler, directory=str(root))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server_info.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield server_info
    finally:
        httpd.shutdown()
        httpd.server_close()


@dataclass
class Container:
    name: str

    def exec(self, *command: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run(["docker", "exec", self.name, *command], capture_output=True, text=True, check=check)

    def sh(self, script: str, check: bool = True) -> subprocess.CompletedProcess:
        return self.exec("sh", "-c", script, check=check)

    def inventory(self, directory: Path, extra: str = "") -> str:
        path = Path(directory) / f"{self.name}.ini"
        path.write_text(f"{self.name} ansible_connection=community.docker.docker ansible_host={self.name} "
                        f"ansible_python_interpreter=/usr/bin/python3 {extra}\n")
        return str(path)


@contextlib.contextmanager
def systemd_container(image: str, prefix: str):
    """A project systemd container (label io.ec2fleet.managed=true), removed afterwards."""
    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    subprocess.run(
        ["docker", "run", "-d", "--name", name, "--hostname", name, "--label", "io.ec2fleet.managed=true",
         *SYSTEMD_FLAGS, image, "/lib/systemd/systemd"],
        check=True, capture_output=True, text=True,
    )
    container = Container(name)
    try:
        # systemd up enough to start units.
        for _ in range(60):
            state = container.exec("systemctl", "is-system-running", check=False).stdout.strip()
            if state in ("running", "degraded"):
                break
            subprocess.run(["sleep", "0.5"], check=True)
        yield container
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True, check=False)

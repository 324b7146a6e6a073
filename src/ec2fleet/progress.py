"""Progress lines for long local-fleet work: phases with elapsed time, and heartbeats.

The time counts from EC2FLEET_T0 (set by tools/lib/progress.sh when `tools/fleet` starts), so the
shell phases (Docker engine, base image, toolchain) and the Python ones (emulator, instances,
converge) share one clock. A step that may run long says every few seconds that it is alive.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from contextlib import contextmanager

HEARTBEAT = float(os.environ.get("EC2FLEET_HEARTBEAT", "5"))
_T0 = float(os.environ.get("EC2FLEET_T0") or time.time())
# What ansible-playbook is doing, from the lines the default callback prints.
_ANSIBLE_STEP = re.compile(r"^(PLAY|TASK|RUNNING HANDLER) \[(?P<name>.*?)\]")


def elapsed(now: float | None = None) -> str:
    seconds = int((now if now is not None else time.time()) - _T0)
    return f"{seconds // 60}:{seconds % 60:02d}"


def phase(text: str) -> None:
    print(f"[{elapsed()}] {text}", file=sys.stderr, flush=True)


@contextmanager
def heartbeat(label: str, interval: float = HEARTBEAT):
    """Says every `interval` seconds that `label` is still running, until the block ends."""
    stop = threading.Event()
    start = time.monotonic()

    def beat():
        while not stop.wait(interval):
            phase(f"{label}: still running ({time.monotonic() - start:.0f}s)")

    thread = threading.Thread(target=beat, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def stream(cmd: list[str], *, cwd=None, env=None, label: str = "", interval: float = HEARTBEAT,
           out=None) -> int:
    """Runs `cmd`, copying its output line by line; when it prints nothing for `interval` seconds,
    says what it is still doing (the last Ansible play or task it started). Returns the exit code."""
    out = out or sys.stdout
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, text=True, bufsize=1)
    state = {"last": time.monotonic(), "step": label or os.path.basename(cmd[0]), "since": time.monotonic()}
    lock = threading.Lock()

    def pump():
        for line in proc.stdout:
            with lock:
                out.write(line)
                out.flush()
                state["last"] = time.monotonic()
                match = _ANSIBLE_STEP.match(line)
                if match:
                    state["step"] = f"{match[1]} [{match['name']}]"
                    state["since"] = state["last"]

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    while reader.is_alive():
        reader.join(timeout=0.2)
        with lock:
            now = time.monotonic()
            if now - state["last"] >= interval:
                phase(f"still in {state['step']} ({now - state['since']:.0f}s)")
                state["last"] = now
    return proc.wait()


def interrupt_once() -> None:
    """Ctrl-C stops a watch loop once: the first SIGINT raises KeyboardInterrupt, later ones are
    ignored. A terminal's Ctrl-C (and `timeout -s INT`) signals the whole process group, so the
    loop can be hit twice (once directly, once through the group) and the second would end the
    program with 130 after the first was handled."""
    import signal

    seen = []

    def handler(signum, frame):
        if not seen:
            seen.append(signum)
            raise KeyboardInterrupt

    signal.signal(signal.SIGINT, handler)

"""The WSGI entry point: ``gunicorn sampleapp.wsgi:application``."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable
from pathlib import Path

from sampleapp._version import __version__

NAME = "sampleapp"

StartResponse = Callable[..., object]


def readiness_problems(environ: dict | None = None) -> list[str]:
    """Why the instance must not take traffic now (empty list: ready)."""
    env = os.environ if environ is None else environ
    problems = []
    state_dir = env.get("SAMPLEAPP_STATE_DIR", "")
    if state_dir:
        path = Path(state_dir)
        if not path.is_dir():
            problems.append("state directory missing")
        elif not os.access(path, os.W_OK):
            problems.append("state directory not writable")
    drain_file = env.get("SAMPLEAPP_DRAIN_FILE") or (str(Path(state_dir) / "drain") if state_dir else "")
    if drain_file and Path(drain_file).exists():
        problems.append("draining")
    return problems


def _json(start_response: StartResponse, status: str, body: dict) -> list[bytes]:
    data = json.dumps(body, sort_keys=True).encode()
    start_response(
        status,
        [
            ("Content-Type", "application/json"),
            ("Content-Length", str(len(data))),
            ("Cache-Control", "no-store"),
        ],
    )
    return [data]


def application(environ: dict, start_response: StartResponse) -> Iterable[bytes]:
    method = environ.get("REQUEST_METHOD", "GET")
    path = environ.get("PATH_INFO", "/") or "/"
    if method not in ("GET", "HEAD"):
        return _json(start_response, "405 Method Not Allowed", {"error": "method not allowed"})
    if path == "/health":
        problems = readiness_problems()
        if problems:
            return _json(
                start_response,
                "503 Service Unavailable",
                {"status": "unavailable", "reasons": problems, "version": __version__},
            )
        return _json(start_response, "200 OK", {"status": "ok", "version": __version__})
    if path == "/version":
        return _json(start_response, "200 OK", {"name": NAME, "version": __version__})
    if path == "/":
        greeting = os.environ.get("SAMPLEAPP_GREETING", "Hello from sampleapp")
        data = f"{greeting} {__version__}\n".encode()
        start_response(
            "200 OK", [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(data)))]
        )
        return [data]
    return _json(start_response, "404 Not Found", {"error": "not found"})

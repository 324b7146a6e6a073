"""The sample application's WSGI behaviour, called directly (no server)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "app"))

from sampleapp import __version__, wsgi


def call(path, method="GET"):
    captured = {}

    def start_response(status, headers):
        captured["status"] = int(status.split()[0])
        captured["headers"] = dict(headers)

    body = b"".join(wsgi.application({"PATH_INFO": path, "REQUEST_METHOD": method}, start_response))
    return captured["status"], captured["headers"], body


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    for name in ("SAMPLEAPP_STATE_DIR", "SAMPLEAPP_DRAIN_FILE", "SAMPLEAPP_GREETING"):
        monkeypatch.delenv(name, raising=False)


def test_version():
    status, headers, body = call("/version")
    assert status == 200
    assert headers["Content-Type"] == "application/json"
    assert json.loads(body) == {"name": "sampleapp", "version": __version__}


def test_health_ready_with_writable_state(tmp_path, monkeypatch):
    monkeypatch.setenv("SAMPLEAPP_STATE_DIR", str(tmp_path))
    status, headers, body = call("/health")
    assert status == 200
    assert json.loads(body) == {"status": "ok", "version": __version__}
    assert headers["Cache-Control"] == "no-store"


def test_health_unavailable_without_state_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("SAMPLEAPP_STATE_DIR", str(tmp_path / "missing"))
    status, _, body = call("/health")
    assert status == 503
    assert json.loads(body)["reasons"] == ["state directory missing"]


def test_health_unavailable_while_draining(tmp_path, monkeypatch):
    monkeypatch.setenv("SAMPLEAPP_STATE_DIR", str(tmp_path))
    (tmp_path / "drain").touch()
    status, _, body = call("/health")
    assert status == 503
    assert json.loads(body)["status"] == "unavailable"
    assert "draining" in json.loads(body)["reasons"]


def test_greeting_from_environment(monkeypatch):
    monkeypatch.setenv("SAMPLEAPP_GREETING", "Hi")
    status, _, body = call("/")
    assert (status, body) == (200, f"Hi {__version__}\n".encode())


def test_unknown_path_and_method():
    assert call("/nope")[0] == 404
    assert call("/health", method="POST")[0] == 405

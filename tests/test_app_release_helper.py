"""The host-side release helper (roles/app/files/app-release), run against a temporary root.

Real installs (venv + offline pip from the artifact's wheels) for install; switch, rollback and
prune also run on releases created by marker file only (the helper counts a directory with
.installed.json as installed), which keeps the venv cost to the install tests.
"""

from __future__ import annotations

import fcntl
import io
import json
import subprocess
import sys
import tarfile
import threading
import time
from pathlib import Path
from wsgiref.simple_server import WSGIRequestHandler, make_server

import pytest
from app_support import HELPER, REPO, build_release

sys.path.insert(0, str(REPO / "app"))
from sampleapp import __version__, wsgi


@pytest.fixture
def root(tmp_path):
    root = tmp_path / "opt" / "sampleapp"
    config = tmp_path / "sampleapp-release"
    config.write_text(
        "APP_NAME=sampleapp\n"
        f"APP_ROOT={root}\n"
        "APP_SERVICE=sampleapp-test.service\n"
        "APP_HEALTH_URL=http://127.0.0.1:9/health\n"
        "APP_HEALTH_TIMEOUT=2\n"
        "APP_KEEP_RELEASES=2\n"
        f"APP_PYTHON={sys.executable}\n"
    )
    root.mkdir(parents=True)
    return root


def config_of(root: Path) -> Path:
    return root.parent.parent / "sampleapp-release"


def helper(root, *args):
    return subprocess.run(
        [sys.executable, str(HELPER), "--config", str(config_of(root)), *args],
        capture_output=True, text=True, timeout=300,
    )


def result_of(run):
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout)


def fake_release(root, version, installed_at, sha256=None):
    path = root / "releases" / version
    path.mkdir(parents=True)
    meta = {"version": version, "installed_at": installed_at}
    if sha256:
        meta["artifact_sha256"] = sha256
    (path / ".installed.json").write_text(json.dumps(meta))


def test_install_is_offline_idempotent_and_immutable(root, tmp_path):
    artifact = build_release("1.0.0")
    sha = artifact.with_name(artifact.name + ".sha256").read_text().split()[0]
    assert result_of(helper(root, "install", "1.0.0", str(artifact), "--sha256", sha)) == {
        "changed": True, "version": "1.0.0"}
    venv_python = root / "releases" / "1.0.0" / "venv" / "bin" / "python"
    out = subprocess.run([str(venv_python), "-c", "import sampleapp, gunicorn; print(sampleapp.__version__)"],
                         capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "1.0.0"
    assert not (root / "current").exists()  # install never switches
    assert result_of(helper(root, "install", "1.0.0", str(artifact)))["changed"] is False
    assert helper(root, "list").stdout.split() == ["1.0.0"]

    # Same version from a different artifact: refused, the installed release is untouched.
    other = tmp_path / "other" / "sampleapp-1.0.0.tar.gz"
    other.parent.mkdir()
    with tarfile.open(artifact) as src, tarfile.open(other, "w:gz") as dst:
        for member in src.getmembers():
            dst.addfile(member, src.extractfile(member) if member.isfile() else None)
        extra = tarfile.TarInfo("sampleapp-1.0.0/EXTRA")
        dst.addfile(extra, io.BytesIO(b""))
    run = helper(root, "install", "1.0.0", str(other))
    assert run.returncode == 5 and "immutable" in run.stderr


def test_install_refuses_bad_input(root, tmp_path):
    artifact = build_release("1.0.0")
    run = helper(root, "install", "1.0.0", str(artifact), "--sha256", "0" * 64)
    assert run.returncode == 5 and "checksum mismatch" in run.stderr
    assert helper(root, "install", "1.0.0", str(tmp_path / "nope.tar.gz")).returncode == 4
    # An artifact of another version must not become this release.
    run = helper(root, "install", "2.0.0", str(artifact))
    assert run.returncode == 5
    # Entries outside the release directory are refused before anything is written.
    evil = tmp_path / "evil.tar.gz"
    with tarfile.open(evil, "w:gz") as tar:
        tar.addfile(tarfile.TarInfo("sampleapp-3.0.0/../../escape"), io.BytesIO(b""))
    assert helper(root, "install", "3.0.0", str(evil)).returncode == 5
    assert helper(root, "install", "../x", str(artifact)).returncode == 2
    assert not (tmp_path / "opt" / "escape").exists()
    assert helper(root, "list").stdout == ""
    assert [p.name for p in (root / "releases").iterdir()] == []


def test_activate_previous_and_rollback(root):
    fake_release(root, "1.0.0", 1)
    fake_release(root, "2.0.0", 2)
    assert helper(root, "current").returncode == 4
    assert result_of(helper(root, "activate", "1.0.0", "--no-restart")) == {
        "changed": True, "version": "1.0.0", "previous": None}
    assert result_of(helper(root, "activate", "2.0.0", "--no-restart"))["previous"] == "1.0.0"
    assert (root / "current").readlink() == Path("releases/2.0.0")
    assert helper(root, "previous").stdout.strip() == "1.0.0"
    assert result_of(helper(root, "activate", "2.0.0", "--no-restart"))["changed"] is False
    assert helper(root, "activate", "9.9.9", "--no-restart").returncode == 4
    assert helper(root, "current").stdout.strip() == "2.0.0"
    assert result_of(helper(root, "rollback", "--no-restart"))["version"] == "1.0.0"
    assert helper(root, "current").stdout.strip() == "1.0.0"
    assert helper(root, "previous").stdout.strip() == "2.0.0"


def test_rollback_without_previous_fails(root):
    fake_release(root, "1.0.0", 1)
    helper(root, "activate", "1.0.0", "--no-restart")
    run = helper(root, "rollback", "--no-restart")
    assert run.returncode == 4 and "no previous release" in run.stderr


def test_prune_keeps_newest_and_current_and_previous(root):
    for number in range(1, 6):
        fake_release(root, f"{number}.0.0", number)
    (root / "artifacts").mkdir()
    (root / "artifacts" / "sampleapp-2.0.0.tar.gz").write_text("x")
    (root / "releases" / "6.0.0").mkdir()  # leftover of a failed install (no marker)
    helper(root, "activate", "1.0.0", "--no-restart")
    helper(root, "activate", "2.0.0", "--no-restart")  # current 2.0.0, previous 1.0.0
    result = result_of(helper(root, "prune"))  # APP_KEEP_RELEASES=2
    assert sorted(result["removed"]) == ["3.0.0", "6.0.0"]
    assert helper(root, "list").stdout.split() == ["1.0.0", "2.0.0", "4.0.0", "5.0.0"]
    assert (root / "artifacts" / "sampleapp-2.0.0.tar.gz").exists()
    assert result_of(helper(root, "prune"))["changed"] is False
    assert result_of(helper(root, "prune", "--keep", "1"))["removed"] == ["4.0.0"]
    assert helper(root, "prune", "--keep", "0").returncode == 2


@pytest.fixture
def app_server(tmp_path, monkeypatch):
    """The sample app from the source tree (version 0.0.0.dev0) on a loopback port."""
    monkeypatch.setenv("SAMPLEAPP_STATE_DIR", str(tmp_path))

    class Quiet(WSGIRequestHandler):
        def log_message(self, *args):
            pass

    server = make_server("127.0.0.1", 0, wsgi.application, handler_class=Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/health"
    server.shutdown()


def test_health_gate(root, app_server, tmp_path):
    assert result_of(helper(root, "health", __version__, "--url", app_server))["healthy"] is True
    run = helper(root, "health", "9.9.9", "--url", app_server, "--timeout", "1")
    assert run.returncode == 3 and "version '0.0.0.dev0'" in run.stderr
    (tmp_path / "drain").touch()  # draining: 503
    run = helper(root, "health", __version__, "--url", app_server, "--timeout", "1")
    assert run.returncode == 3 and "HTTP 503" in run.stderr


def test_missing_settings_file(tmp_path):
    run = subprocess.run([sys.executable, str(HELPER), "--config", str(tmp_path / "none"), "list"],
                         capture_output=True, text=True)
    assert run.returncode == 2 and "not found" in run.stderr


def test_status_on_a_new_host(tmp_path):
    """No root yet (the role reads status right after writing the settings): exit 0, nothing."""
    root = tmp_path / "opt" / "sampleapp"
    config = tmp_path / "sampleapp-release"
    config.write_text(f"APP_NAME=sampleapp\nAPP_ROOT={root}\nAPP_SERVICE=x.service\nAPP_HEALTH_URL=http://127.0.0.1:9/\n")
    run = helper(root, "status")
    assert run.returncode == 0, run.stderr
    assert run.stdout == '{"artifacts": {}, "current": null, "installed": [], "previous": null}\n'
    assert not root.exists()  # read-only: not even the lock file


def test_status_reports_current_previous_and_installed(root):
    assert result_of(helper(root, "status")) == {"current": None, "previous": None, "installed": [], "artifacts": {}}
    fake_release(root, "2.0.0", 2, sha256="b" * 64)
    fake_release(root, "1.0.0", 1, sha256="a" * 64)
    fake_release(root, "3.0.0", 3)  # installed by an older helper: no checksum recorded
    (root / "releases" / "4.0.0").mkdir()  # half-installed: not a release
    helper(root, "activate", "1.0.0", "--no-restart")
    helper(root, "activate", "2.0.0", "--no-restart")
    assert result_of(helper(root, "status")) == {
        "current": "2.0.0", "previous": "1.0.0", "installed": ["1.0.0", "2.0.0", "3.0.0"],
        "artifacts": {"1.0.0": "a" * 64, "2.0.0": "b" * 64, "3.0.0": None}}


def test_remove_drops_a_release_and_its_artifact(root):
    fake_release(root, "1.0.0", 1)
    fake_release(root, "2.0.0", 2)
    fake_release(root, "3.0.0", 3)
    (root / "artifacts").mkdir()
    for version in ("1.0.0", "2.0.0", "3.0.0"):
        (root / "artifacts" / f"sampleapp-{version}.tar.gz").write_text("x")
    helper(root, "activate", "1.0.0", "--no-restart")
    helper(root, "activate", "2.0.0", "--no-restart")  # current 2.0.0, previous 1.0.0

    run = helper(root, "remove", "3.0.0")
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout) == {"changed": True, "version": "3.0.0", "removed": [
        str(root / "releases" / "3.0.0"), str(root / "artifacts" / "sampleapp-3.0.0.tar.gz")]}
    assert len(run.stdout.splitlines()) == 1
    assert not (root / "releases" / "3.0.0").exists()
    assert not (root / "artifacts" / "sampleapp-3.0.0.tar.gz").exists()
    assert helper(root, "list").stdout.split() == ["1.0.0", "2.0.0"]
    # Idempotent: gone is gone.
    assert result_of(helper(root, "remove", "3.0.0")) == {"changed": False, "version": "3.0.0", "removed": []}
    assert result_of(helper(root, "remove", "9.9.9"))["changed"] is False

    # current and previous are refused, with one line on stderr and nothing removed.
    for version, role in (("2.0.0", "current"), ("1.0.0", "previous")):
        run = helper(root, "remove", version)
        assert run.returncode == 6
        assert run.stdout == ""
        assert run.stderr.strip().splitlines() == [f"app-release: release {version} is {role}: refusing to remove it"]
        assert (root / "releases" / version / ".installed.json").exists()
        assert (root / "artifacts" / f"sampleapp-{version}.tar.gz").exists()
    assert helper(root, "remove", "../1.0.0").returncode == 2


def test_remove_cleans_a_half_installed_release(root):
    half = root / "releases" / "4.0.0"
    (half / "venv" / "bin").mkdir(parents=True)  # a failed install left this (no marker)
    (root / "artifacts").mkdir()
    (root / "artifacts" / "sampleapp-4.0.0.tar.gz").write_text("x")
    assert result_of(helper(root, "remove", "4.0.0"))["changed"] is True
    assert list((root / "releases").iterdir()) == []
    assert list((root / "artifacts").iterdir()) == []
    # Only the artifact copy left (install failed before unpacking): removed too.
    (root / "artifacts" / "sampleapp-5.0.0.tar.gz").write_text("x")
    assert result_of(helper(root, "remove", "5.0.0"))["removed"] == [str(root / "artifacts" / "sampleapp-5.0.0.tar.gz")]


def test_remove_on_a_new_host_changes_nothing(tmp_path):
    root = tmp_path / "opt" / "sampleapp"
    config = tmp_path / "sampleapp-release"
    config.write_text(f"APP_NAME=sampleapp\nAPP_ROOT={root}\nAPP_SERVICE=x.service\nAPP_HEALTH_URL=http://127.0.0.1:9/\n")
    assert result_of(helper(root, "remove", "1.0.0")) == {"changed": False, "version": "1.0.0", "removed": []}
    assert not root.exists()


def test_remove_waits_for_the_release_lock(root):
    """remove takes the same flock as install/activate/prune: it never deletes under them."""
    fake_release(root, "1.0.0", 1)
    with open(root / ".release.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        proc = subprocess.Popen([sys.executable, str(HELPER), "--config", str(config_of(root)), "remove", "1.0.0"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(1)
        assert proc.poll() is None  # blocked on the lock
        assert (root / "releases" / "1.0.0").exists()
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert json.loads(out)["changed"] is True
    assert not (root / "releases" / "1.0.0").exists()


def test_activate_and_rollback_with_the_health_gate_in_the_same_call(root, app_server):
    # The app on app_server reports __version__: a release of that version passes, another does not.
    fake_release(root, "1.0.0", 1)
    fake_release(root, __version__, 2)
    run = helper(root, "activate", __version__, "--no-restart", "--health", "--url", app_server)
    assert run.returncode == 0, run.stderr
    switch, gate = (json.loads(line) for line in run.stdout.splitlines())
    assert switch == {"changed": True, "version": __version__, "previous": None}
    assert gate == {"changed": False, "version": __version__, "healthy": True}
    # The gate fails after the switch: exit 3, the switch reported first (the caller rolls back).
    run = helper(root, "rollback", "1.0.0", "--no-restart", "--health", "--url", app_server, "--timeout", "0.5")
    assert run.returncode == 3 and "version '0.0.0.dev0'" in run.stderr
    assert json.loads(run.stdout) == {"changed": True, "version": "1.0.0", "previous": __version__}
    assert helper(root, "current").stdout.strip() == "1.0.0"
    # Not installed: the switch refuses, nothing is waited for.
    assert helper(root, "activate", "9.9.9", "--no-restart", "--health", "--url", app_server).returncode == 4

"""The converged host: release 1.0.0 behind nginx, a hardened service, a protected layout."""

from conftest import http_get

ROOT = "/opt/sampleapp"


def test_serves_release_1_through_nginx():
    health = http_get("/health")
    assert health.status == 200
    assert health.json() == {"status": "ok", "version": "1.0.0"}
    assert http_get("/version").json()["version"] == "1.0.0"
    assert http_get("/").body.decode() == "Hello from molecule 1.0.0\n"


def test_layout(host):
    assert host.file(f"{ROOT}/current").linked_to == f"{ROOT}/releases/1.0.0"
    release = host.file(f"{ROOT}/releases/1.0.0")
    assert release.user == "root" and release.mode == 0o755
    assert host.file(f"{ROOT}/releases/1.0.0/venv/bin/gunicorn").exists
    assert host.file(f"{ROOT}/releases/1.0.0/.installed.json").exists
    state = host.file(f"{ROOT}/shared/state")
    assert (state.user, state.group, state.mode) == ("sampleapp", "sampleapp", 0o750)


def test_env_file_is_private(host):
    env = host.file(f"{ROOT}/shared/sampleapp.env")
    assert (env.user, env.group, env.mode) == ("root", "sampleapp", 0o640)
    assert 'SAMPLEAPP_GREETING="Hello from molecule"' in env.content_string


def test_service_account(host):
    user = host.user("sampleapp")
    assert user.shell == "/usr/sbin/nologin"
    assert user.uid < 1000


def test_service_runs_hardened(host):
    service = host.service("sampleapp")
    assert service.is_running and service.is_enabled
    show = host.check_output(
        "systemctl show sampleapp -p User -p NoNewPrivileges -p ProtectSystem -p ProtectHome "
        "-p PrivateTmp -p CapabilityBoundingSet -p ReadWritePaths -p RestrictSUIDSGID -p PrivateDevices"
    )
    props = dict(line.split("=", 1) for line in show.splitlines())
    assert props["User"] == "sampleapp"
    assert props["NoNewPrivileges"] == "yes"
    assert props["ProtectSystem"] == "strict"
    assert props["ProtectHome"] == "yes"
    assert props["PrivateTmp"] == "yes"
    assert props["PrivateDevices"] == "yes"
    assert props["RestrictSUIDSGID"] == "yes"
    assert props["CapabilityBoundingSet"] == ""
    assert props["ReadWritePaths"] == f"{ROOT}/shared/state"
    # The workers really run as the service user, not root.
    users = host.check_output("ps -o user= -C gunicorn | sort -u").split()
    assert users == ["sampleapp"]


def test_service_sandbox_is_in_force(host):
    """What the kernel applies to the running process, not just what the unit file says."""
    pid = host.check_output("systemctl show -p MainPID --value sampleapp")
    mounts = {}
    for line in host.check_output(f"cat /proc/{pid}/mountinfo").splitlines():
        fields = line.split()
        mounts[fields[4]] = fields[5].split(",")
    # ProtectSystem=strict: everything read-only but the state directory (ReadWritePaths).
    assert "ro" in mounts["/"]
    assert "rw" in mounts[f"{ROOT}/shared/state"]
    assert "ro" in mounts["/home"] and "ro" in mounts["/root"]  # ProtectHome
    assert "/tmp" in mounts  # PrivateTmp: a mount of its own
    status = dict(
        line.split(":", 1) for line in host.check_output(f"cat /proc/{pid}/status").splitlines() if ":" in line
    )
    assert status["NoNewPrivs"].strip() == "1"
    assert int(status["CapBnd"], 16) == 0 and int(status["CapEff"], 16) == 0
    assert status["Seccomp"].strip() == "2"  # SystemCallFilter


def test_gunicorn_listens_on_loopback_only(host):
    assert host.socket("tcp://127.0.0.1:8000").is_listening
    assert not host.socket("tcp://0.0.0.0:8000").is_listening


def test_helper_reports_current(host):
    assert host.check_output("sampleapp-release current") == "1.0.0"
    assert host.check_output("sampleapp-release list") == "1.0.0"
    assert host.run("sampleapp-release previous").rc == 4

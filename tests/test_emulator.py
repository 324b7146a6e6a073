"""The emulator harness: starts on loopback, answers boto3, stops by PID, cleans stale servers."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import boto3
import pytest

from ec2fleet import emulator

pytestmark = pytest.mark.emulator


def test_fixture_server_answers_boto3_on_loopback(aws):
    assert aws.endpoint_url.startswith("http://127.0.0.1:")
    assert os.environ["AWS_ENDPOINT_URL"] == aws.endpoint_url
    ec2 = boto3.client("ec2")  # endpoint and credentials come from the environment
    vpc = ec2.create_vpc(CidrBlock="10.9.0.0/16")["Vpc"]
    assert vpc["VpcId"] in {v["VpcId"] for v in ec2.describe_vpcs()["Vpcs"]}


def test_reset_drops_resources(aws):
    ec2 = boto3.client("ec2")
    ec2.create_vpc(CidrBlock="10.8.0.0/16")
    before = len(ec2.describe_vpcs()["Vpcs"])
    aws.reset()
    assert len(boto3.client("ec2").describe_vpcs()["Vpcs"]) < before


def test_start_and_stop_by_pid_leaves_nothing():
    server = emulator.MotoServer().start()
    pid, pidfile = server.pid, server.pidfile
    assert pidfile.exists()
    server.stop()
    assert not pidfile.exists()
    assert not emulator._is_moto_process(pid)


def test_stale_server_from_killed_run_is_cleaned():
    # A detached server whose owner is gone, as a killed test run leaves it.
    out = subprocess.run(
        [sys.executable, "-m", "ec2fleet.emulator", "start"], check=True, capture_output=True, text=True
    )
    assert "AWS_ENDPOINT_URL=http://127.0.0.1:" in out.stdout
    port = int(out.stdout.split("AWS_ENDPOINT_URL=http://127.0.0.1:")[1].split()[0])
    stale = [info for info in emulator.running_servers() if info["port"] == port]
    assert stale, "the detached server should be running"
    pids = [info["pid"] for info in stale if info["owner"] == "detached"]
    assert pids
    # A detached server (e.g. the local fleet's) survives the orphan sweep each test run does...
    emulator.clean_stale()
    assert all(emulator._is_moto_process(pid) for pid in pids)
    # ...and `ec2fleet-emulator stop` ends it (only it: other test workers keep theirs).
    assert emulator.main(["stop", "--port", str(port)]) == 0
    time.sleep(0.2)
    assert not any(emulator._is_moto_process(pid) for pid in pids)


def test_cli_run_exports_endpoint_and_stops_server(tmp_path):
    probe = tmp_path / "probe.txt"
    code = emulator.main(
        ["run", "--", sys.executable, "-c",
         f"import os; open({str(probe)!r}, 'w').write(os.environ['AWS_ENDPOINT_URL'])"]
    )
    assert code == 0
    endpoint = probe.read_text()
    assert endpoint.startswith("http://127.0.0.1:")
    assert all(f":{info['port']}" not in endpoint for info in emulator.running_servers())


def test_server_that_cannot_start_fails_clearly_and_is_stopped():
    # Port taken by a listening socket: moto exits and the harness says so.
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        server = emulator.MotoServer(port=sock.getsockname()[1])
        with pytest.raises((RuntimeError, TimeoutError)):
            server.start(timeout=10)
    assert server.pid is None
    assert not server.pidfile.exists()


def test_killing_the_owner_midway_then_next_session_cleans(tmp_path):
    # A child process starts a server then is SIGKILLed: the server survives (own session)
    # until clean_stale(), which pytest_sessionstart calls on the next run.
    script = (
        "from ec2fleet import emulator; import time; "
        "emulator.MotoServer().start(); print('up', flush=True); time.sleep(60)"
    )
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "up"
    child.send_signal(signal.SIGKILL)
    child.wait()
    orphans = [info["pid"] for info in emulator.running_servers() if info["owner"] == child.pid]
    assert orphans
    emulator.clean_stale()
    assert not any(emulator._is_moto_process(pid) for pid in orphans)

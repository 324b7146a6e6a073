"""The local fleet's Session Manager STAND-IN (ec2fleet-local-ssm, src/ec2fleet/localfleet/
session_manager.py) and the inventory that uses it (inventory/local-ssm.ec2_fleet.yml): the
plugin's own ssm wiring, with the stand-in taking the AWS CLI's place, against the emulator."""

from __future__ import annotations

import json
import os
import shlex
import socket
import subprocess
import sys
import threading
from pathlib import Path

import boto3
import pytest

from ec2fleet.localfleet import session_manager
from ec2fleet.localfleet.world import FleetSpec, World
from ec2fleet.ops import plain

REPO = Path(__file__).resolve().parents[1]
PROGRAM = Path(sys.executable).parent / "ec2fleet-local-ssm"


def run(*args: str, stdin: bytes = b"") -> subprocess.CompletedProcess:
    return subprocess.run([str(PROGRAM), *args], input=stdin, capture_output=True, timeout=60)


def session_args(target: str, document: str = "AWS-StartSSHSession", port: str = "22") -> list[str]:
    return ["ssm", "start-session", "--target", target, "--document-name", document,
            "--parameters", f"portNumber={port}", "--region", "us-east-1"]


def test_only_the_ssh_document_and_a_port_are_taken():
    assert run(*session_args("i-1", document="AWS-StartPortForwardingSession")).returncode == 252
    assert run("ssm", "start-session", "--target", "i-1", "--document-name", "AWS-StartSSHSession",
               "--parameters", "host=x").returncode == 252
    assert session_manager.port_of("portNumber=2222") == 2222


@pytest.mark.emulator
def test_a_target_that_is_unknown_or_not_running_is_not_connected(aws):
    ec2 = boto3.client("ec2", region_name="us-east-1")
    iid = ec2.run_instances(ImageId="ami-12c6146b", MinCount=1, MaxCount=1)["Instances"][0]["InstanceId"]
    ec2.stop_instances(InstanceIds=[iid])
    for target in ("i-0123456789abcdef0", iid):
        result = run(*session_args(target))
        assert result.returncode == 254, result.stderr
        assert b"(TargetNotConnected) when calling the StartSession operation" in result.stderr


@pytest.mark.emulator
def test_the_session_carries_the_stream_to_the_instances_own_address(aws, monkeypatch):
    ec2 = boto3.client("ec2", region_name="us-east-1")
    iid = ec2.run_instances(ImageId="ami-12c6146b", MinCount=1, MaxCount=1)["Instances"][0]["InstanceId"]
    address = ec2.describe_instances(InstanceIds=[iid])["Reservations"][0]["Instances"][0]["PrivateIpAddress"]
    assert session_manager.target_address(iid, "us-east-1", None) == address
    # The emulator's address is nobody's here: the stream goes to a local server in its place.
    server = socket.create_server(("127.0.0.1", 0))
    got = []

    def serve():
        conn, _ = server.accept()
        with conn:
            conn.sendall(b"SSH-2.0-stand-in\r\n")
            got.append(conn.recv(100))

    threading.Thread(target=serve, daemon=True).start()
    monkeypatch.setattr(session_manager, "target_address", lambda *_: "127.0.0.1")
    read_end, write_end = os.pipe()
    out_read, out_write = os.pipe()
    os.write(write_end, b"SSH-2.0-client\r\n")
    os.close(write_end)
    with os.fdopen(read_end, "rb") as stdin, os.fdopen(out_write, "wb") as stdout:
        monkeypatch.setattr(sys, "stdin", stdin)
        monkeypatch.setattr(sys, "stdout", stdout)
        assert session_manager.main(session_args(iid, port=str(server.getsockname()[1]))) == 0
    with os.fdopen(out_read, "rb") as answer:
        assert answer.read() == b"SSH-2.0-stand-in\r\n"
    assert got == [b"SSH-2.0-client\r\n"]
    server.close()


@pytest.mark.emulator
def test_the_local_ssm_inventory_keeps_the_plugins_wiring(aws, tmp_path):
    World(lambda name, region=None: boto3.client(name, region_name="us-east-1"), FleetSpec(name="local", size=2)).ensure()
    key = tmp_path / "id_ed25519"
    key.write_text("")
    env = {**os.environ, "EC2FLEET_LOCAL_SSH_KEY": str(key), "ANSIBLE_CONFIG": str(REPO / "ansible.cfg")}
    out = subprocess.run([str(Path(sys.executable).parent / "ansible-inventory"), "-i",
                          "inventory/local-ssm.ec2_fleet.yml", "--list"], cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    hosts = plain(json.loads(out.stdout))["_meta"]["hostvars"]
    assert len(hosts) == 3  # the bastion and two web hosts, each reached by its instance id
    for hv in hosts.values():
        assert hv["ec2_connection_mode"] == "ssm" and hv["ansible_host"] == hv["ec2_instance_id"]
        args = shlex.split(hv["ansible_ssh_common_args"])
        assert args[:2] == ["-o", args[1]] and args[1].startswith("ProxyCommand=ec2fleet-local-ssm ssm start-session ")
        assert "--target %h --document-name AWS-StartSSHSession --parameters portNumber=%p" in args[1]
        assert args[2:] == ["-o", f"UserKnownHostsFile={tmp_path}/known_hosts"]

"""The app role's controller-side artifact fetch (tasks/artifact.yml) for the s3 and url sources.

The role's own task file runs on localhost (the controller) via include_role tasks_from=artifact;
S3 is the moto emulator, the HTTPS server a local one on 127.0.0.1 with a self-signed certificate.
"""

from __future__ import annotations

import functools
import hashlib
import http.server
import ssl
import subprocess
import threading
from pathlib import Path

import boto3
import pytest
import yaml
from app_support import build_release, run_playbook

BUCKET = "fleet-artifacts"


def fetch_playbook(tmp_path: Path, **role_vars) -> Path:
    """Run tasks/artifact.yml, then record what it resolved (path and expected sha256)."""
    playbook = tmp_path / "fetch.yml"
    playbook.write_text(yaml.safe_dump([{
        "name": "Fetch the artifact like the app role does",
        "hosts": "localhost",
        "gather_facts": False,
        "tasks": [
            {"name": "Fetch", "ansible.builtin.include_role": {"name": "ec2fleet.fleet.app", "tasks_from": "artifact"},
             "vars": {"app_controller_cache_dir": str(tmp_path / "cache"), **role_vars}},
            {"name": "Record", "ansible.builtin.copy": {
                "dest": str(tmp_path / "resolved"), "mode": "0600",
                "content": "{{ __app_artifact_controller_path }} {{ __app_artifact_expected_sha256 }}"}},
        ],
    }]))
    return playbook


def resolved(tmp_path: Path) -> tuple[Path, str]:
    path, sha = (tmp_path / "resolved").read_text().split()
    return Path(path), sha


@pytest.mark.emulator
def test_s3_source_fetches_and_verifies(aws, tmp_path):
    artifact = build_release("1.0.0")
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket=BUCKET)
    s3.upload_file(str(artifact), BUCKET, f"sampleapp/{artifact.name}")
    s3.upload_file(str(artifact) + ".sha256", BUCKET, f"sampleapp/{artifact.name}.sha256")
    role_vars = {"app_version": "1.0.0", "app_artifact_source": "s3", "app_artifact_s3_bucket": BUCKET,
                 "app_artifact_s3_prefix": "sampleapp/"}
    run = run_playbook(fetch_playbook(tmp_path, **role_vars))
    assert run.returncode == 0, run.stdout[-3000:]
    path, sha = resolved(tmp_path)
    assert path == tmp_path / "cache" / artifact.name
    assert path.read_bytes() == artifact.read_bytes()
    assert sha == hashlib.sha256(artifact.read_bytes()).hexdigest()
    # Second run: the cached copy is current, nothing downloaded again.
    run = run_playbook(fetch_playbook(tmp_path, **role_vars))
    assert run.returncode == 0 and "changed=0" in run.stdout, run.stdout[-3000:]


@pytest.mark.emulator
def test_s3_missing_key_fails_cleanly(aws, tmp_path):
    boto3.client("s3").create_bucket(Bucket=BUCKET)
    run = run_playbook(fetch_playbook(tmp_path, app_version="9.9.9", app_artifact_source="s3",
                                      app_artifact_s3_bucket=BUCKET))
    assert run.returncode != 0
    assert f"Cannot fetch artifact s3://{BUCKET}/sampleapp-9.9.9.tar.gz" in run.stdout
    assert not (tmp_path / "resolved").exists()


@pytest.mark.emulator
def test_s3_object_not_matching_its_checksum_fails(aws, tmp_path):
    artifact = build_release("1.0.0")
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket=BUCKET)
    s3.put_object(Bucket=BUCKET, Key=artifact.name, Body=artifact.read_bytes() + b"tampered")
    s3.upload_file(str(artifact) + ".sha256", BUCKET, f"{artifact.name}.sha256")
    run = run_playbook(fetch_playbook(tmp_path, app_version="1.0.0", app_artifact_source="s3",
                                      app_artifact_s3_bucket=BUCKET))
    assert run.returncode != 0
    assert "checksum mismatch" in run.stdout


@pytest.fixture
def https_server(tmp_path):
    """Serves tmp_path/www over HTTPS on 127.0.0.1 with a throwaway self-signed certificate."""
    www = tmp_path / "www"
    www.mkdir()
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(www)))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield www, f"https://127.0.0.1:{server.server_port}"
    server.shutdown()


def test_url_source_fetches_with_checksum(https_server, tmp_path):
    www, base = https_server
    artifact = build_release("1.0.0")
    (www / artifact.name).write_bytes(artifact.read_bytes())
    (www / (artifact.name + ".sha256")).write_bytes(Path(str(artifact) + ".sha256").read_bytes())
    role_vars = {"app_version": "1.0.0", "app_artifact_source": "url",
                 "app_artifact_url": f"{base}/{artifact.name}", "app_artifact_validate_certs": False}
    run = run_playbook(fetch_playbook(tmp_path, **role_vars))
    assert run.returncode == 0, run.stdout[-3000:]
    path, sha = resolved(tmp_path)
    assert path.read_bytes() == artifact.read_bytes()
    assert sha == hashlib.sha256(artifact.read_bytes()).hexdigest()


def test_url_source_refuses_wrong_checksum_and_plain_http(https_server, tmp_path):
    www, base = https_server
    artifact = build_release("1.0.0")
    (www / artifact.name).write_bytes(artifact.read_bytes())
    run = run_playbook(fetch_playbook(tmp_path, app_version="1.0.0", app_artifact_source="url",
                                      app_artifact_url=f"{base}/{artifact.name}", app_artifact_sha256="0" * 64,
                                      app_artifact_validate_certs=False))
    assert run.returncode != 0
    assert "Cannot fetch artifact" in run.stdout and "checksum" in run.stdout.lower()
    assert not (tmp_path / "cache" / artifact.name).exists()
    run = run_playbook(fetch_playbook(tmp_path, app_version="1.0.0", app_artifact_source="url",
                                      app_artifact_url=f"http://127.0.0.1:9/{artifact.name}"))
    assert run.returncode != 0
    assert "needs an https:// app_artifact_url" in run.stdout


def test_url_source_verifies_certificates_by_default(https_server, tmp_path):
    www, base = https_server
    artifact = build_release("1.0.0")
    (www / artifact.name).write_bytes(artifact.read_bytes())
    (www / (artifact.name + ".sha256")).write_bytes(Path(str(artifact) + ".sha256").read_bytes())
    run = run_playbook(fetch_playbook(tmp_path, app_version="1.0.0", app_artifact_source="url",
                                      app_artifact_url=f"{base}/{artifact.name}"))
    assert run.returncode != 0
    assert "CERTIFICATE_VERIFY_FAILED" in run.stdout or "certificate verify failed" in run.stdout

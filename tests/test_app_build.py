"""tools/build-release: a self-contained, checksummed artifact with the version baked in."""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import tarfile
import zipfile
from pathlib import Path

import pytest
from app_support import REPO, build_release


def test_artifact_and_checksum_file():
    artifact = build_release("1.0.0")
    sidecar = artifact.with_name(artifact.name + ".sha256").read_text()
    digest = hashlib.sha256(artifact.read_bytes()).hexdigest()
    assert sidecar == f"{digest}  sampleapp-1.0.0.tar.gz\n"


def test_artifact_layout_and_pins():
    with tarfile.open(build_release("1.0.0")) as tar:
        names = tar.getnames()
        assert all(name.startswith("sampleapp-1.0.0") for name in names)
        release = json.load(tar.extractfile("sampleapp-1.0.0/RELEASE.json"))
        requirements = tar.extractfile("sampleapp-1.0.0/requirements.txt").read().decode().splitlines()
        wheels = {name.rsplit("/", 1)[1]: tar.extractfile(name).read() for name in names if name.endswith(".whl")}
    assert release["name"] == "sampleapp" and release["version"] == "1.0.0"
    assert sorted(release["wheels"]) == sorted(wheels)
    assert any(name.startswith("gunicorn-") for name in wheels)  # the server travels with the app
    assert all(name.endswith("-none-any.whl") for name in wheels)
    # Every wheel pinned with its own hash (pip --require-hashes on the host).
    for line in requirements:
        spec, hash_option = line.split(" --hash=sha256:")
        name, version = spec.split("==")
        wheel = next(w for w in wheels if w.startswith(f"{name.replace('-', '_')}-{version}-"))
        assert hashlib.sha256(wheels[wheel]).hexdigest() == hash_option


def test_version_baked_into_the_wheel_not_the_source():
    with tarfile.open(build_release("2.0.0")) as tar:
        data = tar.extractfile("sampleapp-2.0.0/wheels/sampleapp-2.0.0-py3-none-any.whl").read()
    with zipfile.ZipFile(io.BytesIO(data)) as wheel:
        assert '__version__ = "2.0.0"' in wheel.read("sampleapp/_version.py").decode()
    assert '"0.0.0.dev0"' in (REPO / "app" / "sampleapp" / "_version.py").read_text()


@pytest.mark.parametrize("version", ["1.0.0-rc1", "v1", "1.0/2", ""])
def test_rejects_non_canonical_versions(version, tmp_path):
    result = subprocess.run(
        [str(REPO / "tools" / "build-release"), version, "--dist", str(tmp_path)], capture_output=True, text=True
    )
    assert result.returncode == 2
    assert "invalid version" in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_an_existing_release_is_kept_unless_rebuilt(tmp_path):
    # Hosts refuse a version whose bytes changed, so building an existing version again must not
    # replace it (the git commit and build time inside would differ).
    def build(*extra: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(REPO / "tools" / "build-release"), "7.0.0", "--dist", str(tmp_path), *extra],
                              capture_output=True, text=True, env={**os.environ, "SOURCE_DATE_EPOCH": epoch})

    epoch = "1700000000"
    first = build()
    assert first.returncode == 0, first.stderr
    artifact = Path(first.stdout.strip())
    original = artifact.read_bytes()

    epoch = "1800000000"
    again = build()
    assert again.returncode == 0 and "already built" in again.stderr
    assert Path(again.stdout.strip()) == artifact and artifact.read_bytes() == original

    # A checksum file that does not match (e.g. an interrupted build) is not trusted: rebuilt.
    checksum = artifact.with_name(artifact.name + ".sha256")
    checksum.write_text("0" * 64 + f"  {artifact.name}\n")
    assert build().returncode == 0 and artifact.read_bytes() != original

    rebuilt_once = artifact.read_bytes()
    epoch = "1900000000"
    forced = build("--rebuild")
    assert forced.returncode == 0 and "already built" not in forced.stderr
    assert artifact.read_bytes() != rebuilt_once
    assert checksum.read_text().split()[0] == hashlib.sha256(artifact.read_bytes()).hexdigest()

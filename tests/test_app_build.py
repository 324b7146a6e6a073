"""tools/build-release: a self-contained, checksummed artifact with the version baked in."""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import tarfile
import zipfile

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

"""The CodeDeploy revision: appspec.yml against the documented AppSpec format, and the bundle."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import jsonschema
import pytest
import yaml
from doubles.harness import REPO

CODEDEPLOY = REPO / "codedeploy"
SCHEMA = json.loads((CODEDEPLOY / "appspec.schema.json").read_text())
EVENT_ORDER = ["ApplicationStop", "BeforeInstall", "AfterInstall", "ApplicationStart", "ValidateService"]


def appspec() -> dict:
    return yaml.safe_load((CODEDEPLOY / "appspec.yml").read_text())


def errors(document: dict) -> list[str]:
    return [error.message for error in jsonschema.Draft7Validator(SCHEMA).iter_errors(document)]


def test_schema_is_a_valid_json_schema():
    jsonschema.Draft7Validator.check_schema(SCHEMA)


def test_appspec_matches_the_documented_format():
    assert errors(appspec()) == []


def test_appspec_hooks_cover_the_lifecycle_as_root_with_timeouts():
    spec = appspec()
    assert spec["os"] == "linux"
    assert list(spec["hooks"]) == EVENT_ORDER
    for event, scripts in spec["hooks"].items():
        # The guide: at most 3600 seconds for all the scripts of one lifecycle event.
        assert sum(script["timeout"] for script in scripts) <= 3600, event
        for script in scripts:
            assert script["runas"] == "root"
            path = CODEDEPLOY / script["location"]
            assert path.is_file() and path.stat().st_mode & 0o111, path


@pytest.mark.parametrize("mutation, message", [
    (lambda s: s.update(version=1.0), "is not one of"),
    (lambda s: s.update(os="macos"), "is not one of"),
    (lambda s: s.pop("os"), "'os' is a required property"),
    (lambda s: s["hooks"].update(Install=[{"location": "hooks/x.sh"}]), "Install"),
    (lambda s: s["hooks"]["AfterInstall"][0].update(timeout=3601), "3601"),
    (lambda s: s["hooks"]["AfterInstall"][0].pop("location"), "'location' is a required property"),
    (lambda s: s["hooks"]["AfterInstall"][0].update(run_as="root"), "run_as"),
    (lambda s: s["files"][0].pop("destination"), "'destination' is a required property"),
    (lambda s: s.update(file_exists_behavior="REPLACE"), "is not one of"),
    (lambda s: s["permissions"][0].update(mode="999"), "999"),
])
def test_schema_rejects_what_the_guide_does_not_allow(mutation, message):
    spec = copy.deepcopy(appspec())
    mutation(spec)
    found = errors(spec)
    assert found and any(message in error for error in found), found


def test_hook_scripts_are_valid_bash():
    for script in sorted((CODEDEPLOY / "hooks").glob("*.sh")):
        subprocess.run(["bash", "-n", str(script)], check=True)


def test_bundle_holds_appspec_hooks_and_verified_artifact(tmp_path):
    dist = tmp_path / "dist"
    subprocess.run([sys.executable, str(REPO / "tools" / "build-release"), "3.1.4", "--dist", str(dist)],
                   check=True, capture_output=True)
    out = subprocess.run([sys.executable, str(CODEDEPLOY / "build-bundle"), "3.1.4", "--dist", str(dist)],
                         check=True, capture_output=True, text=True).stdout.strip()
    with zipfile.ZipFile(out) as bundle:
        names = set(bundle.namelist())
        assert {"appspec.yml", "release/VERSION", "release/sampleapp-3.1.4.tar.gz",
                "release/sampleapp-3.1.4.tar.gz.sha256"} <= names
        for event in appspec()["hooks"].values():
            for script in event:
                assert script["location"] in names
                assert (bundle.getinfo(script["location"]).external_attr >> 16) & 0o755 == 0o755
        assert bundle.read("release/VERSION").decode() == "APP_NAME=sampleapp\nAPP_VERSION=3.1.4\n"

    # A tampered artifact is refused before it is bundled.
    (dist / "sampleapp-3.1.4.tar.gz").write_bytes(b"not the artifact")
    refused = subprocess.run([sys.executable, str(CODEDEPLOY / "build-bundle"), "3.1.4", "--dist", str(dist)],
                             capture_output=True, text=True)
    assert refused.returncode == 1 and "does not match" in refused.stderr


def test_register_playbook_and_revision_agree_on_the_application():
    playbook = yaml.safe_load((REPO / "playbooks" / "codedeploy_register.yml").read_text())
    assert "app_name | default('sampleapp')" in playbook[0]["vars"]["codedeploy_application_name"]
    assert Path(appspec()["files"][0]["destination"]).parts[-2] == "codedeploy-sampleapp"

"""The repository is the collection ec2fleet.fleet: its metadata, its names, and the link that
makes the checkout resolve as the collection (tools/bootstrap)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
MODULES = sorted(p.stem for p in (REPO / "plugins" / "modules").glob("*.py"))
ROLES = sorted(p.name for p in (REPO / "roles").iterdir() if (p / "tasks").is_dir())
CONTENT = ("playbooks", "roles", "molecule", "inventory")


def content_files():
    for folder in CONTENT:
        for path in (REPO / folder).rglob("*"):
            if path.suffix in (".yml", ".yaml", ".j2") and path.is_file():
                yield path


def test_galaxy_metadata():
    galaxy = yaml.safe_load((REPO / "galaxy.yml").read_text())
    assert (galaxy["namespace"], galaxy["name"]) == ("ec2fleet", "fleet")
    for kept_out in ("tests", "tools", "app", "src", "bench", ".cache", ".venv", "dist", "reports"):
        assert kept_out in galaxy["build_ignore"], kept_out


def test_the_checkout_resolves_as_the_collection():
    link = REPO / ".ansible" / "collections" / "ansible_collections" / "ec2fleet" / "fleet"
    assert link.is_symlink() and link.resolve() == REPO, "run tools/bootstrap"


def test_aws_action_group_is_every_module_that_calls_aws():
    runtime = yaml.safe_load((REPO / "meta" / "runtime.yml").read_text())
    calls_aws = sorted(m for m in MODULES if "AwsCalls(" in (REPO / "plugins" / "modules" / f"{m}.py").read_text())
    assert sorted(runtime["action_groups"]["aws"]) == calls_aws
    assert runtime["requires_ansible"].startswith(">=2.19")


@pytest.mark.parametrize("path", list(content_files()), ids=lambda p: str(p.relative_to(REPO)))
def test_no_short_names_for_our_modules_filters_or_roles(path):
    text = path.read_text()
    assert not re.search(r"^\s*(?:- )?fleet_[a-z_]+:", text, re.M), "a fleet_* short module name"
    for module in MODULES:
        assert not re.search(rf"^\s*(?:- )?{module}:\s*$", text, re.M), f"module {module} without its FQCN"
    assert not re.search(r"\|\s*(?:fleet_)?(?:deploy_)?batch(?:es|_queue)\b", text), "a filter without its FQCN"
    for role in ROLES:
        assert not re.search(rf"^\s*(?:- role:|name:)\s+{role}\s*$", text, re.M) or path.parent.name == "meta", \
            f"role {role} without its FQCN"


@pytest.mark.parametrize("args", [["-t", "inventory", "ec2fleet.fleet.ec2_fleet"], ["ec2fleet.fleet.deploy_lock"],
                                  ["-t", "callback", "ec2fleet.fleet.deploy_progress"],
                                  ["-t", "filter", "ec2fleet.fleet.deploy_batches"]])
def test_ansible_doc_renders_through_the_collection(args):
    out = subprocess.run([str(BIN / "ansible-doc"), *args], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert str(REPO / ".ansible" / "collections") in out.stdout.splitlines()[0]


def test_playbooks_run_by_their_collection_name():
    out = subprocess.run([str(BIN / "ansible-playbook"), "ec2fleet.fleet.site", "--syntax-check",
                          "-i", "inventory/controller.yml"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr

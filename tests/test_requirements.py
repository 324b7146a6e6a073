"""requirements.yml stays true to the pinned bundle and to what the content uses (offline)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import yaml
from ansible.utils.version import SemanticVersion

REPO = Path(__file__).resolve().parent.parent
CONTENT_DIRS = ("roles", "playbooks", "molecule", "inventory", "plugins")
PY_IMPORT = re.compile(r"^\s*(?:from|import)\s+ansible\.\S*.*$", re.MULTILINE)
FQCN = re.compile(r"\b([a-z_][a-z0-9_]*)\.([a-z_][a-z0-9_]*)\.[a-z_][a-z0-9_]*\b")


def required() -> dict[str, str]:
    data = yaml.safe_load((REPO / "requirements.yml").read_text())
    return {c["name"]: c["version"] for c in data["collections"]}


def installed() -> dict[str, str]:
    out = subprocess.run(
        [str(Path(sys.executable).parent / "ansible-galaxy"), "collection", "list", "--format", "json"],
        check=True, capture_output=True, text=True, cwd=REPO,
    ).stdout
    found: dict[str, str] = {}
    for collections in json.loads(out).values():
        for name, info in collections.items():
            found.setdefault(name, info["version"])
    return found


def satisfies(version: str, spec: str) -> bool:
    have = SemanticVersion(version)
    for part in spec.split(","):
        match = re.fullmatch(r"\s*(==|>=|<=|!=|>|<|\*)?\s*([\w.\-+]*)\s*", part)
        op, want = match.group(1) or "==", match.group(2)
        if op == "*" or want in ("", "*"):
            continue
        want_v = SemanticVersion(want)
        ok = {"==": have == want_v, ">=": have >= want_v, "<=": have <= want_v,
              "!=": have != want_v, ">": have > want_v, "<": have < want_v}[op]
        if not ok:
            return False
    return True


def test_installed_collections_satisfy_requirements():
    have = installed()
    problems = []
    for name, spec in required().items():
        if name not in have:
            problems.append(f"{name}: not installed (wanted {spec})")
        elif not satisfies(have[name], spec):
            problems.append(f"{name}: installed {have[name]} does not satisfy {spec}")
    assert not problems, "\n".join(problems)


def test_requirements_pin_exact_versions():
    for name, spec in required().items():
        assert spec.startswith("=="), f"{name} should be pinned exactly to the bundle's version, got {spec}"


def test_every_collection_the_content_uses_is_required():
    used = set()
    for folder in CONTENT_DIRS:
        for path in (REPO / folder).rglob("*"):
            if path.suffix in {".yml", ".yaml", ".py", ".j2"} and path.is_file():
                text = path.read_text(errors="ignore")
                if path.suffix == ".py":
                    # Python imports name ansible-core packages (ansible.utils.display), not collections.
                    text = PY_IMPORT.sub("", text)
                for ns, coll in FQCN.findall(text):
                    used.add(f"{ns}.{coll}")
    # Only names that are real installed collections count (FQCN regex also matches e.g. hostnames).
    used &= set(installed())
    used.discard("ansible.builtin")
    used.discard("ec2fleet.fleet")  # this repository itself
    missing = sorted(used - set(required()))
    assert not missing, f"collections used but not in requirements.yml: {missing}"


def test_galaxy_dependencies_are_requirements_yml():
    """The collection's own dependencies (galaxy.yml) pin exactly what requirements.yml pins."""
    galaxy = yaml.safe_load((REPO / "galaxy.yml").read_text())
    assert galaxy["dependencies"] == required()


def test_awx_project_requirements_are_the_same_file():
    """What an AWX project sync installs (collections/requirements.yml) is requirements.yml."""
    awx = REPO / "collections" / "requirements.yml"
    assert yaml.safe_load(awx.read_text()) == yaml.safe_load((REPO / "requirements.yml").read_text())


def test_satisfies_logic():
    assert satisfies("10.1.2", "==10.1.2")
    assert not satisfies("10.1.1", "==10.1.2")
    assert satisfies("2.1.0", ">=2.0.0,<3.0.0")
    assert not satisfies("3.0.0", ">=2.0.0,<3.0.0")

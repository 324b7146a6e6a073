"""The lint stage's judges cover what they claim: tools/lint-shell finds the extensionless shell
scripts (so it cannot silently check nothing) and ruff checks the extensionless Python scripts."""

import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_lint_shell_finds_the_extensionless_scripts():
    out = subprocess.run(["tools/lint-shell", "--list"], cwd=REPO, check=True, capture_output=True, text=True).stdout
    found = set(out.split())
    for script in ["tools/fleet", "tools/test", "tools/platform", "tools/bootstrap", ".ci/run",
                   "tools/lib/progress.sh", "codedeploy/hooks/lib.sh",
                   "tests/doubles/codedeploy-agent/DEBIAN/postinst"]:
        assert script in found, f"tools/lint-shell does not list {script}"
    assert not any(f.endswith(".py") for f in found)


def test_ruff_checks_the_extensionless_python_scripts():
    out = subprocess.run(["ruff", "check", "--show-files", "."], cwd=REPO, check=True,
                         capture_output=True, text=True).stdout
    shown = {Path(line).resolve() for line in out.split()}
    for script in ["tools/build-release", "codedeploy/build-bundle", "roles/app/files/app-release"]:
        assert (REPO / script).resolve() in shown, f"ruff does not check {script}"


def test_ruff_checks_every_python_script_git_tracks():
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, check=True, capture_output=True).stdout
    scripts = []
    for name in filter(None, tracked.decode().split("\0")):
        path = REPO / name
        if path.is_file() and path.suffix == "":
            with path.open("rb") as f:
                first = f.readline()
            if first.startswith(b"#!") and b"python" in first:
                scripts.append(path.resolve())
    out = subprocess.run(["ruff", "check", "--show-files", "."], cwd=REPO, check=True,
                         capture_output=True, text=True).stdout
    shown = {Path(line).resolve() for line in out.split()}
    missing = [str(p.relative_to(REPO)) for p in scripts if p not in shown]
    assert scripts and not missing, f"Python scripts ruff does not check (add them to extend-include): {missing}"

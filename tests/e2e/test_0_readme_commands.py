"""The README's and docs/' commands, run as a user types them, in a fresh clone.

The first command run is the README's main one, `tools/fleet up`, with nothing done before it in
that clone: no venv, no release built, no fleet. Then every other command block of the README and
docs/*.md runs in document order, each block as one shell script (so `eval "$(tools/fleet env)"`
and `. .venv/bin/activate` carry to the lines after them, as in a terminal), in an environment
stripped of this test run's own settings (venv, AWS endpoint, Ansible variables). The commands are
read from the files (tests/doc_commands.py), so a changed README is tested as written; lines that
cannot run here are listed there with the reason.

The clone is `git clone` of this repository plus the working tree's uncommitted changes (none in
CI), so a developer tests what they are about to commit.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import doc_commands
import pytest

REPO = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.docker, pytest.mark.e2e]

# What each kind of command must print besides exiting 0 (regexes, multiline).
EXPECTED_OUTPUT = [
    (r"^tools/fleet up\b", [r"the app answers through the load balancer: .*\"version\": \""]),
    (r"^tools/fleet status --watch\b", [r"(?s)^\d\d:\d\d:\d\d  \d+ instance\(s\) \| lifecycle: .*"
                                        r"^\d\d:\d\d:\d\d  \d+ instance\(s\) \| lifecycle: "]),
    (r"^tools/fleet status\b", [r"^web-\S+\s+i-\w+\s+\S+\s+web\s+InService\s+healthy\s+\d+\.\d+\.\d+"]),
    (r"^tools/fleet run\b", [r"^\d+ ok, 0 failed$"]),
    (r"^tools/fleet logs\b", [r"^web-\S+ \| \S"]),
    (r"^tools/fleet ssh\b", [r"^interactive-shell-ok"]),
    (r"^tools/fleet converge\b", [r"PLAY RECAP"]),
    (r"^tools/fleet smoke\b", [r"\b\d+ passed\b"]),
    (r"^tools/fleet down\b", [r"fleet local is down"]),
    (r"^tools/fleet env\b|tools/fleet env\)", []),
    (r"ansible-playbook\b.*\bdeploy\.yml\b", [r"PLAY RECAP"]),
    (r"ansible-playbook\b.*\brollback\.yml\b", [r"PLAY RECAP"]),
    (r"^vagrant up \S+ --provider=docker", [r"PLAY RECAP"]),
]
RECAP_LINE = re.compile(r"^(\S+)\s+:\s+ok=\d+\s+changed=\d+\s+unreachable=(\d+)\s+failed=(\d+)", re.M)
# Lines that change the shell itself run in every block that has them.
SHELL_STATE = re.compile(r"^(\.|source|eval|export|cd)\s")
STRIPPED_ENV = ("AWS_", "EC2FLEET_", "ANSIBLE_", "PYTEST", "MOLECULE_", "VIRTUAL_ENV")


def user_environment(state_dir: Path) -> dict[str, str]:
    """A login shell's environment: none of this test run's venv, endpoint or Ansible settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(STRIPPED_ENV)}
    env["PATH"] = os.pathsep.join(p for p in os.environ.get("PATH", "").split(os.pathsep)
                                  if p and not p.startswith(str(REPO)))
    # The emulator harness keeps PID files per state dir: `ec2fleet-emulator stop` in the README
    # must stop only the clone's servers, never another test run's on this machine.
    env["EC2FLEET_STATE_DIR"] = str(state_dir)
    env["VAGRANT_CHECKPOINT_DISABLE"] = "1"
    env["ANSIBLE_FORCE_COLOR"] = "0"
    return env


def fresh_clone(dest: Path) -> Path:
    """`git clone` of this repository, plus uncommitted changes and new files of the work tree."""
    subprocess.run(["git", "clone", "--quiet", str(REPO), str(dest)], check=True)
    diff = subprocess.run(["git", "diff", "HEAD", "--binary"], cwd=REPO, check=True, capture_output=True).stdout
    if diff.strip():
        subprocess.run(["git", "apply", "--binary", "--whitespace=nowarn"], cwd=dest, input=diff, check=True)
    untracked = subprocess.run(["git", "ls-files", "--others", "--exclude-standard", "-z"], cwd=REPO,
                               check=True, capture_output=True, text=True).stdout.split("\0")
    for rel in filter(None, untracked):
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / rel, dest / rel)
    return dest


def script_for(block: list[doc_commands.DocCommand], clone: Path, ran_before: set[str]) -> str:
    """The block as one shell script; a command already run by an earlier block is not repeated."""
    lines = [f"cd {clone} || exit 1"]
    for i, cmd in enumerate(block):
        text = doc_commands.expand(cmd.text, doc_commands.PLACEHOLDER_VALUES)
        lines.append(f"printf '\\n@@@ {i} begin\\n'")
        typed = next((v for k, v in doc_commands.TYPED_INPUT.items() if cmd.text.startswith(k)), None)
        if cmd.text in doc_commands.NOT_RUN or (text in ran_before and not SHELL_STATE.match(text)):
            lines.append(f"printf '\\n@@@ {i} end rc=skipped\\n'")
            continue
        seconds = doc_commands.INTERRUPT_AFTER.get(cmd.text)
        if seconds:  # an operator's Ctrl-C; --preserve-status: the command's own exit code counts
            text = f"timeout --preserve-status -s INT {seconds} {text}"
        lines.append(f"{text} <<'EC2FLEET_TYPED'\n{typed}EC2FLEET_TYPED" if typed else f"{text} </dev/null")
        ran_before.add(text)
        lines += ["rc=$?", f"printf '\\n@@@ {i} end rc=%s\\n' \"$rc\"", '[ "$rc" -eq 0 ] || exit 1']
    return "\n".join(lines) + "\n"


def outputs(log: str) -> dict[int, tuple[str, str]]:
    """command index -> (rc, output) from a block's marked log."""
    found = {}
    for match in re.finditer(r"^@@@ (\d+) begin\n(.*?)^@@@ \1 end rc=(\S+)$", log, re.M | re.S):
        found[int(match[1])] = (match[3], match[2])
    return found


def check_command(cmd: doc_commands.DocCommand, rc: str, out: str) -> None:
    where = f"{cmd.where()} `{cmd.text}`"
    assert rc == "0", f"{where} exited {rc}:\n{out[-4000:]}"
    for pattern, wanted in EXPECTED_OUTPUT:
        if re.search(pattern, cmd.text):
            for regex in wanted:
                assert re.search(regex, out, re.M), f"{where}: output lacks /{regex}/:\n{out[-4000:]}"
    for host, unreachable, failed in RECAP_LINE.findall(out):
        assert (unreachable, failed) == ("0", "0"), f"{where}: {host} unreachable={unreachable} failed={failed}"


@pytest.fixture(scope="module")
def clone(tmp_path_factory):
    root = tmp_path_factory.mktemp("fresh-clone")
    path = fresh_clone(root / "ec2-fleet")
    env = user_environment(root / "state")
    try:
        yield path, env
    finally:
        # Whatever a failed block left: the clone's fleet and Vagrant machines.
        if (path / ".cache" / "localfleet" / "local" / "state.json").exists():
            subprocess.run(["tools/fleet", "down"], cwd=path, env=env, capture_output=True, timeout=600)
        if (path / ".vagrant").exists():
            subprocess.run(["vagrant", "destroy", "-f"], cwd=path, env=env, capture_output=True, timeout=600)
        shutil.rmtree(root, ignore_errors=True)


BLOCKS = doc_commands.all_blocks()
RAN: set[str] = set()  # expanded commands run so far, across the blocks of this module


@pytest.mark.parametrize("block", BLOCKS, ids=[b[0].where() for b in BLOCKS])
def test_doc_block_runs_as_written(clone, block):
    path, env = clone
    script = script_for(block, path, RAN)
    proc = subprocess.run(["bash", "-c", script], cwd=path, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=3600)
    log_dir = REPO / "reports" / "e2e"
    log_dir.mkdir(parents=True, exist_ok=True)
    (log_dir / f"readme-{block[0].where().replace('/', '_').replace(':', '-')}.log").write_text(proc.stdout)
    ran = outputs(proc.stdout)
    for i, cmd in enumerate(block):
        assert i in ran, f"{cmd.where()} `{cmd.text}` never ran (the block stopped before it):\n{proc.stdout[-3000:]}"
        rc, out = ran[i]
        if rc != "skipped":
            check_command(cmd, rc, out)
    assert proc.returncode == 0, proc.stdout[-3000:]


def test_first_command_is_the_readme_main_one():
    """The clone's first command is `tools/fleet up`, exactly as the README's two commands give it."""
    assert BLOCKS[0][0].path == "README.md"
    assert BLOCKS[0][0].text == "tools/fleet up"

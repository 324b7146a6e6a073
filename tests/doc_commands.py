"""The shell commands the README and docs/ give operators, read from the files as written.

A fenced block tagged ``sh`` (or ``bash``/``shell``/``console``) holds commands to type, one per
line, with an optional trailing ``# comment``; a block that starts with ``#!`` is the content of a
script file (user data, say), not commands. Every other fenced block must say what it holds
(```` ```text ````, ```` ```yaml ````...), so no command hides in an untagged block.

Placeholders such as ``<fleet>`` or ``<inventory name>`` and optional parts in ``[...]`` are
part of how the docs write a command; :func:`expand` turns them into a runnable line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SHELL_LANGS = {"sh", "bash", "shell", "console"}
FENCE = re.compile(r"^\s*```(?P<lang>[\w+-]*)")
PLACEHOLDER = re.compile(r"<([a-z][a-z ]*)>")
OPTIONAL = re.compile(r"\s*\[[^\]]*\]")


@dataclass(frozen=True)
class DocCommand:
    path: str  # relative to the repository
    line: int  # 1-based line in that file
    text: str  # the command as written, trailing comment removed

    def where(self) -> str:
        return f"{self.path}:{self.line}"


def doc_files(repo: Path = REPO) -> list[Path]:
    return [repo / "README.md", *sorted((repo / "docs").glob("*.md"))]


def blocks(path: Path, repo: Path = REPO) -> list[list[DocCommand]]:
    """The command blocks of one Markdown file, in order; raises on an untagged fenced block."""
    rel = str(path.relative_to(repo))
    found: list[list[DocCommand]] = []
    lines = path.read_text().splitlines()
    i = 0
    while i < len(lines):
        match = FENCE.match(lines[i])
        if not match:
            i += 1
            continue
        lang, start = match["lang"], i + 1
        end = start
        while end < len(lines) and not FENCE.match(lines[end]):
            end += 1
        if not lang:
            raise ValueError(f"{rel}:{i + 1}: fenced block without a language: tag it sh (commands) or "
                             "what it holds (text, yaml, ...)")
        body = lines[start:end]
        if lang in SHELL_LANGS and not (body and body[0].lstrip().startswith("#!")):
            block = []
            pending, first = "", 0
            for offset, raw in enumerate(body):
                text = without_comment(raw).strip()
                if not pending:
                    first = offset
                if text.endswith("\\"):  # a command continued on the next line
                    pending += text[:-1].rstrip() + " "
                    continue
                text = (pending + text).strip()
                pending = ""
                if text and not text.startswith("#"):
                    block.append(DocCommand(rel, start + first + 1, text))
            if block:
                found.append(block)
        i = end + 1
    return found


def without_comment(line: str) -> str:
    """The line up to a `#` that starts a shell comment (after a blank, outside quotes)."""
    quote = None
    for i, char in enumerate(line):
        if quote:
            quote = None if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i]
    return line


def all_blocks(repo: Path = REPO) -> list[list[DocCommand]]:
    """Every command block of the README, then of docs/*.md."""
    return [block for path in doc_files(repo) for block in blocks(path, repo)]


def expand(text: str, values: dict[str, str]) -> str:
    """The line with optional ``[...]`` parts dropped and ``<placeholders>`` filled in."""
    text = OPTIONAL.sub("", text)

    def fill(match: re.Match) -> str:
        if match[1] not in values:
            raise KeyError(f"no value for the placeholder <{match[1]}> in: {text}")
        return values[match[1]]

    return PLACEHOLDER.sub(fill, text)


# -- how the README test (tests/e2e/test_0_readme_commands.py) runs them ------------------------
# Lines not run, each with the reason; everything else runs as written, in document order.
NOT_RUN = {
    "tools/test": "the README's test command itself: CI runs it (.ci/run), and this test is part of it",
    "vagrant up": "VirtualBox or libvirt: there is no hypervisor here; the docker provider line runs instead",
}
# Values for the placeholders the docs write; shell, evaluated where the command runs.
PLACEHOLDER_VALUES = {
    "fleet": "local",
    "inventory name": "\"$(tools/fleet status 2>/dev/null | awk '$1 ~ /^web-/ {print $1; exit}')\"",
}
# What an operator types into an interactive command.
TYPED_INPUT = {
    "tools/fleet ssh": "hostname\necho interactive-shell-ok\nexit\n",
}
# Commands that run until interrupted: the test sends Ctrl-C (SIGINT) after this many seconds.
INTERRUPT_AFTER = {
    "tools/fleet status --watch": 25,
}

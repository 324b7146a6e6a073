"""The commands the README and docs/ give: parsed as tests/e2e/test_0_readme_commands.py runs them.

The e2e test runs them on a fresh clone; these checks keep the docs runnable by it without a
fleet: every block tagged, every placeholder known, every exemption still needed, every ops
command present where a reader finds it."""

from __future__ import annotations

import re

import doc_commands
import pytest

OPS_COMMANDS = ("up", "status", "ssh", "run", "logs", "converge", "env", "smoke", "down")


def test_the_two_commands_open_the_readme():
    first = doc_commands.all_blocks()[0]
    assert [c.path for c in first] == ["README.md", "README.md"]
    assert [c.text for c in first] == ["tools/fleet up", "tools/test"]


def test_every_ops_command_is_in_a_readme_block():
    readme = [c.text for block in doc_commands.all_blocks() for c in block if c.path == "README.md"]
    for name in OPS_COMMANDS:
        assert any(re.search(rf"\btools/fleet {name}\b", text) for text in readme), f"README gives no `tools/fleet {name}`"


def test_every_placeholder_has_a_value():
    for block in doc_commands.all_blocks():
        for cmd in block:
            doc_commands.expand(cmd.text, doc_commands.PLACEHOLDER_VALUES)


def test_every_line_not_run_is_still_in_the_docs():
    written = {c.text for block in doc_commands.all_blocks() for c in block}
    assert set(doc_commands.NOT_RUN) <= written, set(doc_commands.NOT_RUN) - written


def test_parser_reads_tagged_blocks_skips_scripts_and_refuses_untagged(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "README.md").write_text(
        "# x\n```sh\ntools/fleet up   # comment\n# a comment line\n\nfab x --y 'a # b'\nrun a \\\n  --b c\n```\n"
        "```bash\n#!/bin/bash\ncurl example\n```\n```text\nnot a command\n```\n")
    blocks = doc_commands.all_blocks(tmp_path)
    assert [[(c.line, c.text) for c in b] for b in blocks] == [[(3, "tools/fleet up"), (6, "fab x --y 'a # b'"), (7, "run a --b c")]]
    (tmp_path / "docs" / "a.md").write_text("```\nls\n```\n")
    with pytest.raises(ValueError, match=r"docs/a.md:1: fenced block without a language"):
        doc_commands.all_blocks(tmp_path)


def test_expand_fills_placeholders_and_drops_optional_parts():
    assert doc_commands.expand("run -i inventory/<fleet>.yml x.yml [-e a=1]", {"fleet": "local"}) == \
        "run -i inventory/local.yml x.yml"
    with pytest.raises(KeyError, match="<host>"):
        doc_commands.expand("ssh <host>", {})


def test_every_interrupted_command_is_in_the_docs():
    written = {c.text for block in doc_commands.all_blocks() for c in block}
    assert set(doc_commands.INTERRUPT_AFTER) <= written

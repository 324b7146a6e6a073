"""Headless Chromium (Debian's package, installed by tools/platform) for tests that look at pages
the way an operator does, and a reader of the deploy report's test hooks in the rendered DOM."""

from __future__ import annotations

import shutil
import subprocess
import time
from html.parser import HTMLParser
from pathlib import Path

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


def chromium(profile_dir: Path, *args: str) -> tuple[str, float]:
    """Runs headless Chromium with a fresh profile and no network chatter; (stdout, seconds)."""
    if not Path(CHROMIUM).exists():
        raise AssertionError("headless Chromium is missing: `tools/platform packages` installs Debian's chromium")
    command = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               "--disable-dev-shm-usage", "--hide-scrollbars", f"--user-data-dir={Path(profile_dir) / 'profile'}",
               *args]
    started = time.monotonic()
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout, time.monotonic() - started


class DomCounter(HTMLParser):
    def __init__(self):
        super().__init__()
        self.rows, self.batches, self.in_result, self.result = [], [], False, ""
        self.metrics = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        classes = (attrs.get("class") or "").split()
        if tag == "g" and "host-row" in classes:
            self.rows.append((attrs.get("data-host"), attrs.get("data-status")))
        if tag == "g" and "batch" in classes:
            self.batches.append((attrs.get("data-batch"), attrs.get("data-state")))
        if tag == "g" and attrs.get("id") == "lb-metrics":
            self.metrics = attrs
        self.in_result = attrs.get("id") == "result"

    def handle_data(self, data):
        if self.in_result:
            self.result += data

    def handle_endtag(self, tag):
        self.in_result = False

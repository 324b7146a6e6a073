"""Test keys for the SSH certificate tests (tests/test_ssh_cert.py, tests/test_ssh_ca_tools.py)."""

from __future__ import annotations

import subprocess
from pathlib import Path


def keygen(path: Path, kind: str = "ed25519") -> str:
    """A key pair without passphrase at ``path`` (and ``path``.pub); its public key line."""
    subprocess.run(["ssh-keygen", "-q", "-t", kind, "-N", "", "-C", path.name, "-f", str(path)], check=True)
    return (path.parent / f"{path.name}.pub").read_text().strip()

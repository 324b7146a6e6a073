"""Where the tooling finds the repository, and the collection's AWS client layer it uses.

The Python tooling imports the client layer from the collection, the same module the inventory
plugin and the modules use (tools/bootstrap puts the collection's path on the venv's sys.path).
"""

from __future__ import annotations

from pathlib import Path

from ansible_collections.ec2fleet.fleet.plugins.module_utils import aws as client_layer

REPO = Path(__file__).resolve().parents[2]

__all__ = ["REPO", "client_layer"]

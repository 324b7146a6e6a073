"""Access to plugins/module_utils/fleet_aws.py (the project's one boto3 client factory) from
the Python tooling, loaded by path under its stable name as that module documents."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
_NAME = "ec2fleet_fleet_aws"


def fleet_aws():
    module = sys.modules.get(_NAME)
    if module is None:
        spec = importlib.util.spec_from_file_location(_NAME, REPO / "plugins" / "module_utils" / "fleet_aws.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[_NAME] = module
        spec.loader.exec_module(module)
    return module

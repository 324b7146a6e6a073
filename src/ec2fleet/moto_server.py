"""The emulator's server process: moto's own server, with one lookup made constant-time.

moto answers every EC2 resource's tags (each instance in a DescribeInstances answer) by scanning
every tag of the region through regular expressions (``TagBackend.describe_tags`` with a
``resource-id`` filter), so one DescribeInstances of 1,000 instances costs several seconds and
grows with the square of the fleet. Real EC2 has no such cost. The lookup below reads the
resource's own tags from the same table instead: the same tags, in the same order, in the same
shape; only the scan is gone (tests/test_emulator_tag_index.py compares both). Nothing else of moto changes.

    python -m ec2fleet.moto_server -H 127.0.0.1 -p PORT     (what MotoServer.start() runs)
"""

from __future__ import annotations

import sys


def install_tag_index() -> None:
    from moto.ec2.models.core import TaggedEC2Resource
    from moto.ec2.utils import EC2_PREFIX_TO_RESOURCE, get_prefix

    def get_tags(self) -> list[dict[str, str]]:
        resource_id = getattr(self, "id", None)
        if not resource_id:
            return []
        # .get, not [...]: the table is a defaultdict, and a read must not add an entry.
        tags = self.ec2_backend.tags.get(resource_id) or {}
        resource_type = EC2_PREFIX_TO_RESOURCE.get(get_prefix(resource_id), "")
        return [{"resource_id": resource_id, "key": key, "value": value, "resource_type": resource_type}
                for key, value in tags.items()]

    TaggedEC2Resource.get_tags = get_tags


def main(argv: list[str] | None = None) -> int:
    install_tag_index()
    from moto.server import main as moto_main

    moto_main(argv)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

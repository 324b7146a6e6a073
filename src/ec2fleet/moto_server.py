"""The emulator's server process: moto's own server, with one lookup made constant-time and two
CloudWatch calls moto lacks.

moto answers every EC2 resource's tags (each instance in a DescribeInstances answer) by scanning
every tag of the region through regular expressions (``TagBackend.describe_tags`` with a
``resource-id`` filter), so one DescribeInstances of 1,000 instances costs several seconds and
grows with the square of the fleet. Real EC2 has no such cost. The lookup below reads the
resource's own tags from the same table instead: the same tags, in the same order, in the same
shape; only the scan is gone (tests/test_emulator_tag_index.py compares both).

CloudWatch (``install_cloudwatch``; tests/test_emulator_cloudwatch.py):

* ``PutCompositeAlarm`` is not implemented by moto, although its alarm model and DescribeAlarms
  already carry composite alarms (``AlarmRule``): the call is routed to the handler moto wrote
  for both (it reads ``AlarmRule``).
* Percentiles: moto answers no ``pNN`` statistic, and stores a PutMetricData member's
  ``Values``/``Counts`` as one datum per count (a load balancer's response times: one object per
  request, kept for the server's life). Such a member is kept as one distribution datum here
  (sum, minimum, maximum and sample count as moto's statistic sets, so moto's own statistics read
  it unchanged), and GetMetricData's ``pNN`` / ``pNN.N`` statistics are answered from the values
  of the period (nearest rank, each value weighted by its count), as CloudWatch answers them for
  raw values.

Nothing else of moto changes.

    python -m ec2fleet.moto_server -H 127.0.0.1 -p PORT     (what MotoServer.start() runs)
"""

from __future__ import annotations

import math
import re
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


PERCENTILE = re.compile(r"p(\d{1,2}(?:\.\d+)?|100)")


def percentile(pairs: list[tuple[float, float]], rank: float) -> float | None:
    """The nearest-rank ``rank``th percentile of (value, count) pairs; None without values."""
    total = sum(count for _, count in pairs)
    if total <= 0:
        return None
    wanted = max(1.0, math.ceil(rank / 100 * total - 1e-9))
    seen = 0.0
    for value, count in sorted(pairs):
        seen += count
        if seen >= wanted:
            return value
    return max(value for value, _ in pairs)


def install_cloudwatch() -> None:
    from moto.cloudwatch import models, responses

    class Distribution(models.MetricAggregatedDatum):
        """A PutMetricData member's Values and Counts, as one datum."""

        __module__ = models.__name__  # moto's model registry files classes by their module's service

        def __init__(self, namespace, name, pairs, dimensions, timestamp, unit):
            super().__init__(namespace, name, min_stat=min(v for v, _ in pairs), max_stat=max(v for v, _ in pairs),
                             sample_count=sum(c for _, c in pairs), sum_stat=sum(v * c for v, c in pairs),
                             dimensions=dimensions, timestamp=timestamp, unit=unit)
            self.pairs = pairs

    put_metric_data = models.CloudWatchBackend.put_metric_data

    def put_with_distributions(self, namespace, metric_data):
        for number, member in enumerate(metric_data, 1):
            self._validate_parameters_put_metric_data(member, number)
        put_metric_data(self, namespace, [m for m in metric_data if not m.get("Values")])
        for member in metric_data:
            if not member.get("Values"):
                continue
            counts = member.get("Counts") or [1] * len(member["Values"])
            pairs = [(float(v), float(c)) for v, c in zip(member["Values"], counts, strict=True) if float(c) > 0]
            if pairs:
                self.metric_data.append(Distribution(namespace, member["MetricName"], pairs,
                                                     member.get("Dimensions", ()), member.get("Timestamp"),
                                                     member.get("Unit")))

    statistic = models.Statistics.get_statistics_for_type

    def with_percentiles(self, stat):
        match = PERCENTILE.fullmatch(stat or "")
        if not match:
            return statistic(self, stat)
        pairs = []
        for datum in self.metric_data:
            if isinstance(datum, Distribution):
                pairs.extend(datum.pairs)
            elif isinstance(datum, models.MetricDatum):
                pairs.append((datum.value, 1.0))
        return percentile(pairs, float(match[1]))

    models.CloudWatchBackend.put_metric_data = put_with_distributions
    models.Statistics.get_statistics_for_type = with_percentiles
    responses.CloudWatchResponse.put_composite_alarm = responses.CloudWatchResponse.put_metric_alarm


# Where GetConsoleOutput finds what an instance printed on its console: <dir>/<instance id>
# (set by MotoServer.start; the local fleet writes there what cloud-init prints at first boot).
CONSOLE_DIR_ENV = "EC2FLEET_CONSOLE_DIR"


def install_console_output() -> None:
    """moto answers every GetConsoleOutput with the same sample text; an instance whose console
    the local fleet wrote (its SSH host keys, as cloud-init prints them) gets that instead."""
    import os
    from pathlib import Path

    from moto.ec2.responses import general
    from moto.ec2.utils import Base64EncodedString

    sample = general.General.get_console_output

    def get_console_output(self):
        result = sample(self)
        written = Path(os.environ.get(CONSOLE_DIR_ENV, "/nonexistent")) / self._get_param("InstanceId")
        if written.is_file():
            result.result["Output"] = Base64EncodedString.from_raw_string(written.read_text())
        return result

    general.General.get_console_output = get_console_output


def main(argv: list[str] | None = None) -> int:
    install_tag_index()
    install_cloudwatch()
    install_console_output()
    from moto.server import main as moto_main

    moto_main(argv)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

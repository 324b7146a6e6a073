"""Reading CloudWatch alarm states for a deploy's alarm gate (the ``alarm_state`` module).

Production code only reads alarms: CloudWatch evaluates them. One DescribeAlarms call answers up to
100 alarm names of both types (``AlarmTypes``); its pages (``NextToken``) are followed. Every call
goes through ``aws.AwsCalls``.
"""

from __future__ import annotations

import time
from datetime import datetime, timezone

from ansible_collections.ec2fleet.fleet.plugins.module_utils.deploy import DeployError

ALARM_TYPES = ("MetricAlarm", "CompositeAlarm")
NAMES_PER_CALL = 100  # DescribeAlarms' AlarmNames limit (and MaxRecords')
ALARM, OK, INSUFFICIENT_DATA = "ALARM", "OK", "INSUFFICIENT_DATA"
INSUFFICIENT_DATA_MODES = ("ok", "alarm")


def alarm_name(name_or_arn):
    """``web-5xx`` from ``web-5xx`` or ``arn:aws:cloudwatch:<region>:<account>:alarm:web-5xx``."""
    if name_or_arn.startswith("arn:"):
        _head, found, name = name_or_arn.partition(":alarm:")
        if not found or not name:
            raise DeployError(f"not a CloudWatch alarm ARN: {name_or_arn}")
        return name
    return name_or_arn


def parse_names(names):
    """The alarm names, ARNs turned into names, in order, each once; one-line errors for bad ones."""
    found = []
    for item in names or []:
        if not isinstance(item, str) or not item.strip():
            raise DeployError(f"alarm names must be non-empty strings, got {item!r}")
        name = alarm_name(item.strip())
        if len(name) > 255:
            raise DeployError(f"alarm name longer than 255 characters: {name[:40]}...")
        if name not in found:
            found.append(name)
    return found


def _timestamp(value):
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=timezone.utc)
    if isinstance(value, str) and value:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    return None


def summarize(alarm, kind):
    """What the gate reports of one alarm (DescribeAlarms' MetricAlarms/CompositeAlarms entry)."""
    updated = _timestamp(alarm.get("StateUpdatedTimestamp"))
    return {
        "name": alarm["AlarmName"],
        "arn": alarm.get("AlarmArn", ""),
        "type": kind,
        "state": alarm.get("StateValue", INSUFFICIENT_DATA),
        "reason": alarm.get("StateReason", ""),
        "updated": updated.isoformat() if updated else None,
        "updated_epoch": updated.timestamp() if updated else None,
    }


def describe(aws, names):
    """{name: summarize()} for those of ``names`` that exist, in ceil(n/100) calls (plus pages)."""
    found = {}
    for first in range(0, len(names), NAMES_PER_CALL):
        chunk = names[first:first + NAMES_PER_CALL]
        token = None
        while True:
            page = aws.call("cloudwatch", "describe_alarms", f"describe alarm(s) {', '.join(chunk[:3])}"
                            + (f" and {len(chunk) - 3} more" if len(chunk) > 3 else ""),
                            AlarmNames=chunk, AlarmTypes=list(ALARM_TYPES), MaxRecords=NAMES_PER_CALL,
                            **({"NextToken": token} if token else {}))
            for key, kind in (("MetricAlarms", "metric"), ("CompositeAlarms", "composite")):
                for alarm in page.get(key, []):
                    if alarm["AlarmName"] in chunk:
                        found[alarm["AlarmName"]] = summarize(alarm, kind)
            token = page.get("NextToken")
            if not token:
                break
    return found


def assess(names, found, insufficient_data="ok"):
    """The gate's reading of one DescribeAlarms pass.

    ``firing``: alarms in ALARM, and in INSUFFICIENT_DATA too when ``insufficient_data`` is
    ``alarm``; ``insufficient``: alarms in INSUFFICIENT_DATA (whichever way they count);
    ``missing``: names with no alarm; ``fired_at``: the earliest state change of the firing ones."""
    firing_states = {ALARM, INSUFFICIENT_DATA} if insufficient_data == "alarm" else {ALARM}
    firing = [n for n in names if n in found and found[n]["state"] in firing_states]
    stamps = [found[n]["updated_epoch"] for n in firing if found[n]["updated_epoch"] is not None]
    first = min(stamps) if stamps else None
    return {
        "alarms": {n: found[n] for n in names if n in found},
        "firing": firing,
        "insufficient": [n for n in names if n in found and found[n]["state"] == INSUFFICIENT_DATA],
        "missing": [n for n in names if n not in found],
        "fired_at": datetime.fromtimestamp(first, tz=timezone.utc).isoformat() if first is not None else None,
        "fired_at_epoch": first,
    }


def watch(aws, names, insufficient_data="ok", allow_missing=False, wait_seconds=0.0, poll_interval=10.0,
          clock=time.monotonic, sleep=time.sleep):
    """Read the alarms; with ``wait_seconds``, read again every ``poll_interval`` until one fires or
    the time is up (the bake). DeployError for missing alarms unless ``allow_missing``."""
    if insufficient_data not in INSUFFICIENT_DATA_MODES:
        raise DeployError(f"insufficient_data must be one of {', '.join(INSUFFICIENT_DATA_MODES)}, "
                          f"got {insufficient_data!r}")
    if wait_seconds < 0:
        raise DeployError(f"wait_seconds must be 0 or more, got {wait_seconds}")
    if poll_interval <= 0:
        raise DeployError(f"poll_interval must be more than 0 seconds, got {poll_interval}")
    started = clock()
    deadline = started + wait_seconds
    polls = 0
    while True:
        reading = assess(names, describe(aws, names) if names else {}, insufficient_data)
        polls += 1
        if reading["missing"] and not allow_missing:
            raise DeployError(f"alarm(s) not found: {', '.join(reading['missing'])} ({aws.where})")
        left = deadline - clock()
        if reading["firing"] or left <= 0:
            break
        sleep(min(poll_interval, left))
    reading.update(polls=polls, waited=round(clock() - started, 3), ok=not reading["firing"] and not reading["missing"])
    return reading


def message(reading, wait_seconds):
    """One line for the operator."""
    if reading["firing"]:
        first = reading["alarms"][reading["firing"][0]]
        return (f"{len(reading['firing'])} alarm(s) firing: {', '.join(reading['firing'])} "
                f"({first['name']}: {first['state']} since {first['updated']}: {first['reason']})")
    watched = f"watched {reading['waited']:.0f}s of {wait_seconds:g}s, " if wait_seconds else ""
    missing = f"; not found: {', '.join(reading['missing'])}" if reading["missing"] else ""
    return f"{len(reading['alarms'])} alarm(s) not firing ({watched}{reading['polls']} read(s)){missing}"

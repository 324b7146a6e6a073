"""One self-contained HTML page for a rolling deployment's report (beside the JSON report).

``render_html(report)`` turns the dict that the ``deploy_report`` module's ``build_report`` writes into one
HTML5 document with inline CSS and inline SVG only: no scripts, no stylesheets, fonts or images
from anywhere, so the file opens offline and can be attached to a ticket as it is. The markup is
also well-formed XML (every element closed, attributes quoted, only XML entities), so tests can
parse it with ``xml.etree.ElementTree``.

What the page shows:

* a header: app, env, version, the result (``<span id="result">``), start, duration, hosts,
  batches, versions before/after and the failure reason lines;
* a timeline, x = seconds since the start, one row per host in plan order grouped by batch
  (``<g class="batch" data-batch data-state>`` holding ``<g class="host-row" data-host
  data-status>``), with a segment per phase taken from the host's ``times`` (epoch floats):

  ``out``       leaves service (Standby entered / drain starts)
  ``drained``   out of service, install starts
  ``installed`` release switched, health wait starts
  ``healthy``   health gate passed, return to service starts
  ``in``        back in service
  ``rollback``  rollback starts (the failure's moment, for the host that failed)
  ``done``      rollback finished

  A host without ``times`` (older reports, hosts never started) is a row with no bars and its
  status;
* when the rollout stopped on an alarm, an operator's abort or a checkpoint nobody resumed
  (``stopped_by``: ``{kind, alarm, reason, fired_at, fired, line}``), that line first in the failure
  box, the batches the whole-deploy rollback switched back (``rolled_back_batches``) among the
  facts, and a vertical marker at the moment it fired (``<g id="stopped-by" data-kind data-alarm
  data-fired>``); hosts that rollback switched back (``rollback_scope`` ``deploy``) are not
  failures of their own;
* when the report has ``lb_metrics`` (``{"source": str, "period": seconds, "points": [{"t":
  epoch, "requests": n, "errors": n}, ...]}``, each point counting the period that starts at
  ``t``), requests and errors per period on the same time axis (``<g id="lb-metrics"
  data-requests data-errors>`` with the totals).

Optional report keys it reads besides build_report's: ``started`` (epoch; else ``started_at``
is parsed), ``canary`` (hosts in the first batch, > 0 labels batch 1 as the canary),
``stopped_by``, ``rolled_back_batches`` and ``lb_metrics``. Every string from the report is escaped.

Standard library only, and deploy_rollout's rule for a host's own failure (``own_failure``, as
the text report): the ``deploy_report`` module ships both in its payload.
"""

from __future__ import annotations

import calendar
import contextlib
import math
import os
import tempfile
import time
from html import escape

from ansible_collections.ec2fleet.fleet.plugins.module_utils.deploy_rollout import own_failure, with_the_deploy

# Geometry of the SVGs (pixels). The page is a fixed width; it scrolls vertically.
WIDTH = 1340
LABEL_W = 420          # host name, instance id, AZ
STATUS_W = 280         # status text
PLOT_X0 = LABEL_W + 10
PLOT_X1 = WIDTH - STATUS_W - 10
AXIS_H = 26

# Phases in the order they happen: (times key that starts it, CSS class, legend text).
PHASES = (
    ("out", "drain", "out of service / draining"),
    ("drained", "install", "installing / switching"),
    ("installed", "health", "health wait"),
    ("healthy", "return", "back in service"),
)
TIME_KEYS = ("out", "drained", "installed", "healthy", "in", "rollback", "done")

STATUS_TEXT = {
    "deployed": "deployed",
    "rolled_back": "rolled back",
    "rollback_failed": "rollback FAILED",
    "unreachable": "UNREACHABLE",
    "not_deployed": "NOT DEPLOYED",
    "failed": "FAILED",
    "vanished": "vanished (terminated)",
    "not_started": "not started",
}

CSS = """
:root { color-scheme: light; }
* { box-sizing: border-box; }
body { margin: 12px 16px 32px; font: 14px/1.4 "DejaVu Sans", "Liberation Sans", Arial, sans-serif;
       color: #1f2933; background: #ffffff; }
h1 { font-size: 22px; margin: 0 0 8px; display: flex; align-items: center; gap: 14px; flex-wrap: wrap; }
h1 .env { font-weight: normal; color: #52606d; }
h2 { font-size: 16px; margin: 18px 0 6px; }
.result { display: inline-block; padding: 2px 12px; border-radius: 4px; color: #ffffff;
          font-size: 16px; letter-spacing: 0.05em; }
.result.succeeded { background: #2e7d32; }
.result.failed { background: #c62828; }
.facts { display: flex; flex-wrap: wrap; gap: 4px 28px; margin: 0; }
.facts div { display: flex; gap: 6px; }
.facts dt { color: #616e7c; }
.facts dd { margin: 0; font-weight: bold; }
.failure { margin: 10px 0 0; padding: 8px 12px; border-left: 4px solid #c62828; background: #fdecea; }
.failure h2 { margin: 0 0 4px; color: #b71c1c; font-size: 15px; }
.failure ul { margin: 0; padding-left: 18px; }
.failure li { white-space: pre-wrap; word-break: break-word; font-family: "DejaVu Sans Mono", monospace;
              font-size: 12.5px; }
.note { color: #616e7c; font-size: 12.5px; margin: 4px 0; }
.legend { display: flex; flex-wrap: wrap; gap: 6px 18px; list-style: none; padding: 0; margin: 12px 0 6px;
          font-size: 13px; }
.legend li { display: flex; align-items: center; gap: 6px; }
.sw { display: inline-block; width: 22px; height: 12px; border-radius: 2px; }
.sw-fail { width: auto; height: auto; color: #d50000; font-weight: bold; }
.sw-batch { background: #eef2f7; border-top: 2px solid #7b8794; }
.sw-drain, .seg.drain { background: #f4a340; fill: #f4a340; }
.sw-install, .seg.install { background: #3f6fb5; fill: #3f6fb5; }
.sw-health, .seg.health { background: #35b0ab; fill: #35b0ab; }
.sw-return, .seg.return { background: #7cb342; fill: #7cb342; }
.sw-rollback, .seg.rollback { background: #9c5fb5; fill: #9c5fb5; }
.sw-rollback-failed, .seg.rollback-failed { background: #4a148c; fill: #4a148c; }
section { margin-top: 6px; }
svg { display: block; font-family: "DejaVu Sans", "Liberation Sans", Arial, sans-serif; }
svg text { fill: #1f2933; }
svg .mono { font-family: "DejaVu Sans Mono", "Liberation Mono", monospace; fill: #52606d; white-space: pre; }
svg .muted { fill: #7b8794; }
svg .tick { font-size: 11px; fill: #616e7c; }
svg .grid { stroke: #e4e7eb; stroke-width: 1; }
svg .axis { stroke: #9aa5b1; stroke-width: 1; }
svg .band-0 { fill: #f5f7fa; }
svg .band-1 { fill: #ffffff; }
svg .boundary { stroke: #7b8794; stroke-width: 1.5; }
svg .batch-title { font-weight: bold; }
svg .row-bg { fill: transparent; }
svg .host-row:hover .row-bg { fill: #fff8e1; }
svg .host { font-weight: bold; }
svg .st-deployed { fill: #2e7d32; }
svg .st-rolled_back { fill: #7b3f98; }
svg .st-rollback_failed { fill: #b71c1c; font-weight: bold; }
svg .st-unreachable { fill: #b71c1c; font-weight: bold; }
svg .st-not_deployed { fill: #b71c1c; font-weight: bold; }
svg .st-failed { fill: #b71c1c; font-weight: bold; }
svg .st-vanished { fill: #7b8794; }
svg .st-not_started { fill: #7b8794; }
svg .st-incomplete { fill: #e65100; }
svg .err { fill: #c62828; }
svg .errline-bg { fill: #fdecea; }
svg .fail-mark { stroke: #d50000; stroke-width: 2.5; stroke-linecap: round; }
svg .fail-halo { fill: #ffffff; stroke: #d50000; stroke-width: 1.5; }
svg .span-deployed { fill: #a5d6a7; }
svg .span-rolled_back { fill: #ce93d8; }
svg .span-rollback_failed { fill: #ef9a9a; }
svg .span-incomplete { fill: #ffcc80; }
svg .span-not_started { fill: none; }
svg .req { fill: #90a4ae; }
svg .errbar { fill: #e53935; }
svg .mband-0 { fill: #e8edf3; }
svg .mband-1 { fill: #f3f5f8; }
svg .total { font-weight: bold; }
svg .stop-mark { stroke: #d50000; stroke-width: 2; stroke-dasharray: 6,3; }
svg .stop-label { fill: #b71c1c; font-weight: bold; font-size: 11px; }
"""


# -- values -----------------------------------------------------------------------------------

def _num(value):
    """A finite float, or None (report values may be strings: Ansible templates them)."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _e(value):
    """Escaped text or attribute value (quotes included), of anything."""
    return escape("" if value is None else str(value), quote=True)


def _clip(text, limit):
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: max(1, limit - 1)] + "\u2026"


def _duration(seconds):
    if seconds is None:
        return "?"
    seconds = max(0.0, float(seconds))
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def _tick_label(seconds):
    sign = "-" if seconds < 0 else ""
    seconds = abs(round(seconds))
    if seconds < 60:
        return f"{sign}{seconds}s"
    minutes, secs = divmod(seconds, 60)
    if minutes < 60:
        return f"{sign}{minutes}m" + (f"{secs:02d}s" if secs else "")
    hours, minutes = divmod(minutes, 60)
    return f"{sign}{hours}h" + (f"{minutes:02d}m" if minutes else "")


def _count(value):
    """A total as text: whole numbers without decimals, thousands separated."""
    if float(value).is_integer():
        return f"{int(value):,}"
    return f"{value:,.1f}"


def _plain(value):
    """A total for a data-* attribute: 12 not 12.0."""
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def _stop(report):
    """The report's stopped_by when it says why, else None."""
    stop = report.get("stopped_by")
    return stop if isinstance(stop, dict) and stop.get("line") else None


def _start_epoch(report, hosts, points):
    started = _num(report.get("started"))
    if started is not None:
        return started
    text = report.get("started_at")
    if text:
        for fmt in ("%Y-%m-%dT%H:%M:%SZ", "%Y-%m-%dT%H:%M:%S"):
            try:
                return float(calendar.timegm(time.strptime(str(text), fmt)))
            except ValueError:
                pass
    candidates = [t for host in hosts for t in _times(host, 0.0).values()] + [p["t"] for p in points]
    return min(candidates) if candidates else 0.0


def _times(host, origin):
    """The host's times as seconds since ``origin`` (only the valid keys)."""
    raw = host.get("times")
    if not isinstance(raw, dict):
        return {}
    found = {}
    for key in TIME_KEYS:
        value = _num(raw.get(key))
        if value is not None:
            found[key] = value - origin
    return found


def _segments(host, rel):
    """(start, end, css class, label) of each phase the host's times show."""
    segments = []
    for key, css, label in PHASES:
        if key not in rel:
            continue
        later = [rel[k] for k in TIME_KEYS[TIME_KEYS.index(key) + 1:] if k in rel]
        if later:
            segments.append((rel[key], min(later), css, label))
    if "rollback" in rel:
        end = rel.get("done", max(rel.values()))
        failed = host.get("status") == "rollback_failed"
        segments.append((rel["rollback"], end, "rollback-failed" if failed else "rollback",
                         "rollback (failed)" if failed else "rolling back"))
    return [s for s in segments if s[1] >= s[0]]


def _metric_points(report):
    metrics = report.get("lb_metrics")
    if not isinstance(metrics, dict):
        return None, []
    points = []
    for point in metrics.get("points") or []:
        if not isinstance(point, dict):
            continue
        t = _num(point.get("t"))
        if t is None:
            continue
        points.append({"t": t, "requests": max(0.0, _num(point.get("requests")) or 0.0),
                       "errors": max(0.0, _num(point.get("errors")) or 0.0)})
    points.sort(key=lambda p: p["t"])
    period = _num(metrics.get("period"))
    if not period or period <= 0:
        gaps = [b["t"] - a["t"] for a, b in zip(points, points[1:]) if b["t"] > a["t"]]
        period = min(gaps) if gaps else 10.0
    return {"source": metrics.get("source") or "", "period": period}, points


# -- axis -------------------------------------------------------------------------------------

class Axis:
    """Seconds since the start -> x pixels in the plot area, with round ticks."""

    STEPS = (1, 2, 5, 10, 15, 20, 30, 60, 120, 180, 300, 600, 900, 1200, 1800, 3600, 7200, 10800, 21600)

    def __init__(self, lo, hi):
        self.lo, self.hi = lo, hi if hi > lo else lo + 1.0
        span = self.hi - self.lo
        wanted = max(2, (PLOT_X1 - PLOT_X0) // 80)
        self.step = next((s for s in self.STEPS if span / s <= wanted), self.STEPS[-1])
        while span / self.step > wanted:
            self.step *= 2

    def x(self, seconds):
        return PLOT_X0 + (seconds - self.lo) / (self.hi - self.lo) * (PLOT_X1 - PLOT_X0)

    def ticks(self):
        first = math.ceil(self.lo / self.step) * self.step
        value = first
        while value <= self.hi + 1e-9:
            yield value
            value += self.step

    def draw(self, y, top):
        """The axis line with tick labels above (top axis) or below it."""
        out = [f'<line class="axis" x1="{PLOT_X0}" y1="{y}" x2="{PLOT_X1}" y2="{y}"/>']
        for value in self.ticks():
            x = self.x(value)
            y2 = y - 4 if top else y + 4
            ty = y - 7 if top else y + 15
            out.append(f'<line class="axis" x1="{x:.1f}" y1="{y}" x2="{x:.1f}" y2="{y2}"/>'
                       f'<text class="tick" x="{x:.1f}" y="{ty}" text-anchor="middle">{_e(_tick_label(value))}</text>')
        return "".join(out)

    def grid(self, y1, y2):
        return "".join(f'<line class="grid" x1="{self.x(v):.1f}" y1="{y1}" x2="{self.x(v):.1f}" y2="{y2}"/>'
                       for v in self.ticks())


# -- page -------------------------------------------------------------------------------------

def _host_list(report):
    return [h for b in report.get("batches") or [] for h in b.get("hosts") or []]


def _header(report, hosts):
    result = "SUCCEEDED" if str(report.get("result", "")).lower() == "succeeded" else "FAILED"
    counts = {}
    for host in hosts:
        counts[host.get("status") or "not_started"] = counts.get(host.get("status") or "not_started", 0) + 1
    order = list(STATUS_TEXT)
    breakdown = ", ".join(f"{n} {STATUS_TEXT.get(s, s)}"
                          for s, n in sorted(counts.items(), key=lambda i: (order.index(i[0]) if i[0] in order else 99, i[0])))
    batches = report.get("batches") or []
    skipped = report.get("skipped") or []
    facts = [
        ("started", f"{report.get('started_at') or '?'}"),
        ("duration", _duration(_num(report.get("seconds")))),
        ("hosts", f"{len(hosts)}" + (f" ({breakdown})" if breakdown else "")),
        ("batches", str(len(batches))),
        ("skipped", f"{len(skipped)} (already on {report.get('version', '?')})" if skipped else "0"),
        ("versions before", ", ".join(str(v) for v in report.get("versions_before") or []) or "-"),
        ("versions after", ", ".join(str(v) for v in report.get("versions_after") or []) or "-"),
    ]
    stop = _stop(report)
    if stop:
        facts.append(("stopped by", f"alarm {stop['alarm']}" if stop.get("alarm") else str(stop.get("kind") or "?")))
    rolled_back = [str(n) for n in report.get("rolled_back_batches") or []]
    if rolled_back:
        facts.append(("switched back with the deploy", "batches " + ", ".join(rolled_back)))
    out = [
        "<header>",
        f'<h1><span>{_e(report.get("app", "?"))} {_e(report.get("version", "?"))}'
        f' <span class="env">to {_e(report.get("env", "?"))}</span></span>'
        f' <span id="result" class="result {result.lower()}">{result}</span></h1>',
        '<dl class="facts">',
    ]
    out += [f"<div><dt>{_e(k)}</dt><dd>{_e(v)}</dd></div>" for k, v in facts]
    out.append("</dl>")
    if skipped:
        out.append(f'<p class="note">skipped: {_e(_clip(", ".join(str(s) for s in skipped), 400))}</p>')
    failures = [f"stopped: {stop['line']}"] if stop and stop.get("kind") != "failure" else []
    for host in hosts:
        if own_failure(host):
            status = STATUS_TEXT.get(host.get("status"), host.get("status"))
            line = f"{host.get('host')} ({status}, batch {host.get('batch', '?')}): {host.get('error') or 'failed'}"
            if host.get("rollback_error"):
                line += f"\nrollback: {host['rollback_error']}"
            failures.append(line)
    if result == "FAILED" and not failures:
        failures.append("the rollout was aborted (no host reported a failure of its own)")
    if failures:
        out.append('<div class="failure"><h2>Failure</h2><ul>')
        out += [f"<li>{_e(line)}</li>" for line in failures]
        out.append("</ul></div>")
    out.append("</header>")
    return "\n".join(out)


def _legend():
    items = [(f"sw sw-{css}", label) for _phase, css, label in PHASES]
    items += [("sw sw-rollback", "rolling back"), ("sw sw-rollback-failed", "rollback failed"),
              ("sw sw-batch", "batch boundary")]
    out = ['<ul class="legend">']
    out += [f'<li><span class="{css}"></span>{_e(label)}</li>' for css, label in items]
    out.append('<li><span class="sw sw-fail">\u2715</span>failure (hover for the error)</li>')
    out.append("</ul>")
    return "\n".join(out)


def _status_text(host):
    status = host.get("status") or "not_started"
    seconds = host.get("seconds") if isinstance(host.get("seconds"), dict) else {}
    total = _num(seconds.get("total"))
    if status == "deployed":
        text = f"deployed {host.get('version_before') or '(none)'} \u2192 {host.get('version_after') or '?'}"
        return text + (f" \u00b7 {_duration(total)}" if total is not None else ""), f"st-{status}"
    if status == "not_started":
        return "not started", "st-not_started"
    error = str(host.get("error") or "")
    if with_the_deploy(host):
        return f"switched back to {host.get('version_before') or '(none)'} with the deploy", f"st-{status}"
    if error.startswith("batch:"):
        return error[len("batch:"):].strip() or STATUS_TEXT.get(status, status), f"st-{status}"
    if status == "rolled_back":
        return f"\u2715 failed, rolled back to {host.get('version_before') or '(none)'}", "err"
    if status == "rollback_failed":
        return "\u2715 failed, rollback FAILED", "st-rollback_failed"
    return f"{STATUS_TEXT.get(status, status)}" + (f": {error}" if error else ""), f"st-{status}"


def _error_line(host):
    """The failure's reason, for the line under a failed host's bars."""
    text = f"\u2715 {host.get('error') or 'failed'}"
    if host.get("rollback_error"):
        text += f"  \u2014  rollback: {host['rollback_error']}"
    return text


def _sizes(count):
    """(row height, font size, batch header height) for this many host rows."""
    if count <= 40:
        return 24, 12, 26
    if count <= 100:
        return 18, 11, 22
    return 14, 10, 20


def _batch_spans(batch, origin):
    times = [t for h in batch.get("hosts") or [] for t in _times(h, origin).values()]
    return (min(times), max(times)) if times else None


def _stop_mark(report, axis, origin, top, bottom):
    """A dashed vertical line where the alarm (or the operator's answer) stopped the rollout."""
    stop = _stop(report)
    fired = _num(stop.get("fired")) if stop else None
    if fired is None:
        return ""
    x = axis.x(fired - origin)
    label = f"alarm {stop['alarm']}" if stop.get("alarm") else f"stopped ({stop.get('kind') or '?'})"
    return (f'<g id="stopped-by" data-kind="{_e(stop.get("kind"))}" data-alarm="{_e(stop.get("alarm") or "")}" '
            f'data-fired="{_e(stop.get("fired_at") or "")}"><title>{_e(stop["line"])}</title>'
            f'<line class="stop-mark" x1="{x:.1f}" y1="{top}" x2="{x:.1f}" y2="{bottom}"/>'
            f'<text class="stop-label" x="{x + 4:.1f}" y="{top + 12}">{_e(_clip(label, 40))}</text></g>')


def _timeline(report, axis, origin, all_hosts):
    row_h, font, head_h = _sizes(len(all_hosts))
    batches = report.get("batches") or []
    bands, body = [], []
    y = AXIS_H
    for index, batch in enumerate(batches):
        hosts = batch.get("hosts") or []
        number = batch.get("batch", index + 1)
        state = str(batch.get("state") or "not_started")
        heights = [row_h + (_err_h(font) if own_failure(h) else 0) for h in hosts]
        block_h = head_h + sum(heights)
        canary = batch.get("canary") or (index == 0 and (_num(report.get("canary")) or 0) > 0)
        title = f"batch {number} ({state.replace('_', ' ')})"
        detail = " \u00b7 ".join(x for x in ("canary" if canary else "",
                                             f"{len(hosts)} host" + ("s" if len(hosts) != 1 else "")) if x)
        secs = _num(batch.get("seconds"))
        if secs:
            detail += f" \u00b7 {_duration(secs)}"
        overhead = _num(batch.get("overhead_seconds"))
        tooltip = title + (f", {_duration(secs)}" if secs else "") + (
            f", overhead {_duration(overhead)} (time not spent waiting on drains and health checks)"
            if overhead is not None else "")
        ty = y + head_h / 2 + (font + 1) * 0.36
        parts = [f'<g class="batch" data-batch="{_e(number)}" data-state="{_e(state)}">',
                 f"<title>{_e(tooltip)}</title>",
                 f'<line class="boundary" x1="0" y1="{y}" x2="{WIDTH}" y2="{y}"/>',
                 f'<text x="8" y="{ty:.1f}" font-size="{font + 1}"><tspan class="batch-title st-{_e(state)}">'
                 f'{_e(title)}</tspan><tspan class="muted" dx="8">'
                 f'{_e(_clip(detail, int((LABEL_W - 24) / ((font + 1) * 0.62)) - len(title)))}</tspan></text>']
        bands.append(f'<rect class="band-{index % 2}" x="0" y="{y}" width="{WIDTH}" height="{block_h}"/>')
        span = _batch_spans(batch, origin)
        if span:
            x1, x2 = axis.x(span[0]), axis.x(span[1])
            parts.append(f'<rect class="span-{_e(state)}" x="{x1:.1f}" y="{y + head_h / 2 - 3:.1f}" '
                         f'width="{max(2.0, x2 - x1):.1f}" height="6" rx="3"/>')
        y += head_h
        for host, height in zip(hosts, heights):
            parts.append(_host_row(host, axis, origin, y, row_h, height, font))
            y += height
        parts.append("</g>")
        body.append("".join(parts))
    bottom = y
    height = bottom + AXIS_H + 4
    return (f'<svg class="timeline" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" '
            f'role="img" aria-label="deployment timeline, one row per host">'
            + "".join(bands)
            + axis.grid(AXIS_H, bottom)
            + "".join(body)
            + _stop_mark(report, axis, origin, AXIS_H, bottom)
            + axis.draw(AXIS_H, top=True) + axis.draw(bottom, top=False)
            + f'<text class="tick" x="{PLOT_X0 - 12}" y="{bottom + 15}" text-anchor="end">seconds since the start \u2192</text>'
            + "</svg>")


def _err_h(font):
    return font + 8


def _host_row(host, axis, origin, y, row_h, height, font):
    name = str(host.get("host") or "?")
    status = str(host.get("status") or "not_started")
    instance = str(host.get("instance_id") or "")
    az = str(host.get("az") or "")
    rel = _times(host, origin)
    mid = y + row_h / 2
    ty = mid + font * 0.36
    bar_h = round(row_h * 0.58)
    info = [name, f"instance {instance or '-'}", f"AZ {az or '-'}", f"ASG {host.get('asg') or '-'}",
            f"status {status}", f"version {host.get('version_before') or '(none)'} -> {host.get('version_after') or '-'}"]
    # Instance id and AZ right-aligned in the label column (monospace: predictable width), the
    # name in what is left; an inventory name that already holds the instance id goes without.
    meta = "  ".join(x for x in ((instance[:19] if instance and instance not in name else ""), az[:12]) if x)
    meta_font = font - 1
    name_room = LABEL_W - 6 - len(meta) * meta_font * 0.61 - 14 - 22
    out = [f'<g class="host-row" data-host="{_e(name)}" data-status="{_e(status)}">',
           f'<title>{_e(" | ".join(info))}</title>',
           f'<rect class="row-bg" x="0" y="{y}" width="{WIDTH}" height="{height}"/>',
           f'<text class="host" x="22" y="{ty:.1f}" font-size="{font}">{_e(_clip(name, int(name_room / (font * 0.64))))}</text>',
           f'<text class="mono" x="{LABEL_W - 6}" y="{ty:.1f}" font-size="{meta_font}" text-anchor="end">{_e(meta)}</text>']
    for start, end, css, label in _segments(host, rel):
        x1, x2 = axis.x(start), axis.x(end)
        out.append(f'<rect class="seg {css}" x="{x1:.1f}" y="{mid - bar_h / 2:.1f}" width="{max(1.5, x2 - x1):.1f}" '
                   f'height="{bar_h}"><title>{_e(name)}: {_e(label)} {_e(_duration(end - start))} '
                   f'(from {_e(_tick_label(start))})</title></rect>')
    text, css = _status_text(host)
    if own_failure(host):
        error = str(host.get("error") or "failed")
        if rel:
            at = rel.get("rollback", max(rel.values()))
            x = axis.x(at)
            r = bar_h / 2 + 1
            d = r * 0.55
            out.append(f'<g class="failure-mark"><title>{_e(name)} failed at {_e(_tick_label(at))}: {_e(error)}</title>'
                       f'<circle class="fail-halo" cx="{x:.1f}" cy="{mid:.1f}" r="{r:.1f}"/>'
                       f'<path class="fail-mark" d="M{x - d:.1f},{mid - d:.1f}L{x + d:.1f},{mid + d:.1f}'
                       f'M{x - d:.1f},{mid + d:.1f}L{x + d:.1f},{mid - d:.1f}"/></g>')
        line = _error_line(host)
        out.append(f'<rect class="errline-bg" x="16" y="{y + row_h - 2}" width="{WIDTH - 32}" height="{_err_h(font)}" rx="3"/>')
        out.append(f'<text class="errline err" x="22" y="{y + row_h + _err_h(font) / 2 + font * 0.2:.1f}" '
                   f'font-size="{font}"><title>{_e(line)}</title>'
                   f'{_e(_clip(line, int((WIDTH - 30) / (font * 0.6))))}</text>')
    out.append(f'<text class="status {css}" x="{PLOT_X1 + 14}" y="{ty:.1f}" font-size="{font - 1}">'
               f'<title>{_e(text)}</title>{_e(_clip(text, int((STATUS_W - 16) / ((font - 1) * 0.52))))}</text>')
    out.append("</g>")
    return "".join(out)


def _nice_max(value):
    if value <= 0:
        return 1.0
    exp = 10 ** math.floor(math.log10(value))
    for factor in (1, 2, 2.5, 5, 10):
        if value <= factor * exp:
            return factor * exp
    return 10 * exp


def _metrics(report, axis, origin, meta, points):
    total_req = sum(p["requests"] for p in points)
    total_err = sum(p["errors"] for p in points)
    period = meta["period"]
    panel_h, gap = 110, 26
    top = 22
    height = top + 2 * panel_h + gap + AXIS_H + 26
    out = [f'<svg class="metrics" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" role="img" '
           f'aria-label="load balancer requests and errors">',
           f'<g id="lb-metrics" data-requests="{_plain(total_req)}" data-errors="{_plain(total_err)}" '
           f'data-period="{_plain(period)}" data-points="{len(points)}">']
    # Batch spans behind both panels, so errors line up with the batch that caused them.
    last_label = -1e9
    for index, batch in enumerate(report.get("batches") or []):
        span = _batch_spans(batch, origin)
        if not span:
            continue
        x1, x2 = axis.x(span[0]), axis.x(span[1])
        out.append(f'<rect class="mband-{index % 2}" x="{x1:.1f}" y="{top}" width="{max(1.0, x2 - x1):.1f}" '
                   f'height="{2 * panel_h + gap}"/>')
        out.append(f'<line class="boundary" x1="{x1:.1f}" y1="{top - 4}" x2="{x1:.1f}" y2="{top + 2 * panel_h + gap}" '
                   f'stroke-dasharray="3,3"/>')
        label = f"batch {batch.get('batch', index + 1)}"
        if x1 >= last_label:
            out.append(f'<text class="tick" x="{x1 + 3:.1f}" y="{top - 8}">{_e(label)}</text>')
            last_label = x1 + 3 + len(label) * 11 * 0.62 + 6
    panels = (("requests", "req", total_req, f"{_count(total_req)} requests in total"),
              ("errors", "errbar", total_err,
               f"{_count(total_err)} errors in total"
               + (f" ({100.0 * total_err / total_req:.2f} %)" if total_req else "")))
    for number, (key, css, total, summary) in enumerate(panels):
        y0 = top + number * (panel_h + gap)
        base = y0 + panel_h
        peak = max(2.0, _nice_max(max((p[key] for p in points), default=0.0)))
        out.append(f'<text x="8" y="{y0 + 16}" font-size="13" class="total">{_e(key)} per {_e(_plain(period))} s</text>')
        out.append(f'<text x="8" y="{y0 + 36}" font-size="12" class="{"err" if key == "errors" and total else "muted"}">{_e(summary)}</text>')
        for fraction in (0.0, 0.5, 1.0):
            gy = base - fraction * panel_h
            out.append(f'<line class="grid" x1="{PLOT_X0}" y1="{gy:.1f}" x2="{PLOT_X1}" y2="{gy:.1f}"/>'
                       f'<text class="tick" x="{PLOT_X0 - 6}" y="{gy + 4:.1f}" text-anchor="end">{_e(_count(peak * fraction))}</text>')
        for point in points:
            value = point[key]
            if value <= 0:
                continue
            start, end = point["t"] - origin, point["t"] - origin + period
            if end <= axis.lo or start >= axis.hi:
                continue
            x1, x2 = axis.x(max(start, axis.lo)), axis.x(min(end, axis.hi))
            width = x2 - x1 - (1 if x2 - x1 > 3 else 0)
            h = value / peak * panel_h
            out.append(f'<rect class="{css}" x="{x1:.1f}" y="{base - h:.1f}" width="{max(1.0, width):.1f}" height="{h:.1f}">'
                       f'<title>{_e(_tick_label(start))}: {_e(_count(value))} {_e(key)}</title></rect>')
        out.append(f'<line class="axis" x1="{PLOT_X0}" y1="{base}" x2="{PLOT_X1}" y2="{base}"/>')
    bottom = top + 2 * panel_h + gap
    out.append(axis.draw(bottom, top=False))
    out.append(f'<text class="tick" x="{PLOT_X0 - 12}" y="{bottom + 15}" text-anchor="end">seconds since the start \u2192</text>')
    out.append("</g></svg>")
    source = f" (source: {meta['source']})" if meta["source"] else ""
    heading = (f'<h2>Load balancer</h2><p class="note">{_e(_count(total_req))} requests, {_e(_count(total_err))} errors'
               f" over the same time axis, per {_e(_plain(period))} s{_e(source)}</p>")
    return heading + "".join(out)


def render_html(report: dict) -> str:
    """The whole HTML5 document for ``report`` (build_report's dict, plus times/lb_metrics)."""
    report = report if isinstance(report, dict) else {}
    hosts = _host_list(report)
    meta, points = _metric_points(report)
    origin = _start_epoch(report, hosts, points)
    rels = [t for h in hosts for t in _times(h, origin).values()]
    fired = _num((_stop(report) or {}).get("fired"))
    if fired is not None:
        rels.append(fired - origin)
    lo = min([0.0] + rels + [p["t"] - origin for p in points])
    hi = max([_num(report.get("seconds")) or 0.0] + rels
             + [p["t"] - origin + meta["period"] for p in points])
    axis = Axis(lo, hi)
    result = "SUCCEEDED" if str(report.get("result", "")).lower() == "succeeded" else "FAILED"
    title = f"Deploy {report.get('app', '?')} {report.get('version', '?')} to {report.get('env', '?')}: {result}"
    timed = sum(1 for h in hosts if _times(h, origin))
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8"/>',
        '<meta name="viewport" content="width=device-width, initial-scale=1"/>',
        f"<title>{_e(title)}</title>",
        f"<style>{CSS}</style>",
        "</head>",
        f'<body data-result="{result.lower()}">',
        _header(report, hosts),
        _legend(),
        '<section id="timeline">',
        "<h2>Timeline</h2>",
    ]
    if hosts and timed < len(hosts):
        parts.append(f'<p class="note">{len(hosts) - timed} of {len(hosts)} host(s) have no recorded times '
                     "(not started, or a report from before times were recorded): rows without bars.</p>")
    parts.append(_timeline(report, axis, origin, hosts))
    parts.append("</section>")
    if meta is not None:
        parts.append('<section id="load-balancer">')
        if points:
            parts.append(_metrics(report, axis, origin, meta, points))
        else:
            parts.append('<h2>Load balancer</h2><p class="note">no data points were recorded.</p>'
                         '<svg width="1" height="1"><g id="lb-metrics" data-requests="0" data-errors="0"/></svg>')
        parts.append("</section>")
    parts += ["</body>", "</html>", ""]
    return "\n".join(parts)


def write_html(report: dict, path: str) -> str:
    """Write render_html(report) to ``path`` atomically (a temporary file, then os.replace)."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    handle, tmp = tempfile.mkstemp(prefix=".deploy-report-", suffix=".html.tmp", dir=directory)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            stream.write(render_html(report))
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return path

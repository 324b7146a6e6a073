"""The HTML deploy report (plugins/module_utils/deploy_html.py): self-contained, escaped,
well-formed, one row per host grouped by batch, the result, the load balancer's totals; and the
page as headless Chromium renders it (skipped when Chromium is not installed)."""

from __future__ import annotations

import itertools
import re
import struct
import xml.etree.ElementTree as ET
import zlib

import pytest
from ansible_collections.ec2fleet.fleet.plugins.module_utils import deploy_html, deploy_rollout
from ansible_collections.ec2fleet.fleet.plugins.modules import deploy_report as report_module
from browser import DomCounter, chromium
from deploy_support import REPO, run_module

START = 1_790_000_000.0  # 2026-09-21T13:33:20Z
EVIL = "health gate: GET /healthz said <script>alert(1)</script> & \"quoted\" 'single' 502"


def host(name, batch, status="deployed", at=None, before="1.4.2", after="2.0.0", fail_in=None, error=None,
         rollback_error="", rollback_at=None):
    """A deploy_result as deploy-host.yml / deploy-rollback-host.yml record it, plus ``times``.

    at: seconds after START when the host leaves service (None: no times, as in older reports).
    fail_in: the times key at which the host failed (rollback starts there instead).
    rollback_at: seconds after START when a host that finished is rolled back with its batch.
    """
    az = "us-east-1" + name.split("-")[1][-1]
    result = {"host": name, "instance_id": f"i-0{zlib.crc32(name.encode()):08x}{zlib.crc32(name[::-1].encode()):08x}", "az": az, "asg": "web",
              "batch": batch, "version_before": before, "status": status}
    if at is None:
        return result
    steps = [("out", 0.0), ("drained", 11.5), ("installed", 7.8), ("healthy", 4.2), ("in", 6.4)]
    times, clock = {}, START + at
    for key, length in steps:
        clock += length
        if key == fail_in:
            times["rollback"] = clock
            times["done"] = clock + 14.6
            break
        times[key] = clock
    if rollback_at is not None:
        times["rollback"] = START + rollback_at
        times["done"] = START + rollback_at + 13.9
    result["times"] = {k: round(v, 3) for k, v in times.items()}
    if status == "deployed":
        t = result["times"]
        result.update(version_after=after, seconds={
            "out_of_service": round(t["drained"] - t["out"], 2), "deploy": round(t["healthy"] - t["drained"], 2),
            "back_in_service": round(t["in"] - t["healthy"], 2), "total": round(t["in"] - t["out"], 2),
            "waits": 14.1})
    else:
        end = max(result["times"].values())
        result.update(version_after=before if status == "rolled_back" else "unknown", error=error or "failed",
                      rollback_error=rollback_error,
                      seconds={"total": round(end - result["times"]["out"], 2)}, steps_before_failure={})
    return result


def lb_metrics(seconds, spike_at=None):
    points = []
    for n in range(int(seconds // 5) + 1):
        t = START + n * 5
        errors = 0 if spike_at is None or not spike_at <= n * 5 < spike_at + 15 else 9 + n % 4
        points.append({"t": t, "requests": 180 + (n * 37) % 60, "errors": errors})
    return {"source": "fleetd nginx access log", "period": 5, "points": points}


def build(plan, results, version="2.0.0", aborted=False, seconds=120.0):
    params = {"app": "sampleapp", "env": "prod", "version": version, "started": START,
              "plan": plan, "hosts": results, "aborted": aborted}
    report = report_module.build_report(params, now=START + seconds)
    report["started"] = START
    return report


@pytest.fixture
def succeeded():
    plan = {"skipped": ["web-1c-9"], "batches": [["web-1a-1"], ["web-1a-2", "web-1b-1", "web-1c-1"],
                                                  ["web-1a-3", "web-1b-2", "web-1c-2"]]}
    results = [host("web-1a-1", 1, at=1.0)]
    results += [host(n, 2, at=33.0 + i * 0.4) for i, n in enumerate(plan["batches"][1])]
    results += [host(n, 3, at=66.0 + i * 0.4) for i, n in enumerate(plan["batches"][2])]
    report = build(plan, results, seconds=101.5)
    report["canary"] = 1
    report["lb_metrics"] = lb_metrics(105)
    return report


@pytest.fixture
def failed():
    plan = {"skipped": [], "batches": [["web-1a-1"], ["web-1a-2", "web-1b-1", "web-1c-1"],
                                       ["web-1a-3", "web-1b-2", "web-1c-2"]]}
    batch_error = "batch: rolled back with its batch (web-1b-1 failed)"
    results = [host("web-1a-1", 1, at=1.0),
               host("web-1a-2", 2, "rolled_back", at=33.0, rollback_at=65.0, error=batch_error),
               host("web-1b-1", 2, "rolled_back", at=33.4, fail_in="healthy",
                    error="Deploy the release with the app role (install, switch, health gate): " + EVIL),
               host("web-1c-1", 2, "rolled_back", at=33.8, rollback_at=65.2, error=batch_error)]
    report = build(plan, results, aborted=True, seconds=88.0)
    report["canary"] = 1
    report["lb_metrics"] = lb_metrics(90, spike_at=55)
    return report


def parse(document):
    return ET.fromstring(document.split("\n", 1)[1] if document.startswith("<!DOCTYPE") else document)


def by_class(root, tag, css):
    return [e for e in root.iter(tag) if css in (e.get("class") or "").split()]


def text_of(element):
    return "".join(element.itertext())


# -- the document -------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["succeeded", "failed"])
def test_self_contained(request, name):
    document = deploy_html.render_html(request.getfixturevalue(name))
    assert document.startswith("<!DOCTYPE html>\n<html")
    for forbidden in ("http://", "https://", "src=", "<link", "href=", "url(", "@import", "@font-face", "xmlns"):
        assert forbidden not in document, forbidden
    assert "<script" not in document.lower().replace("&lt;script", "")
    # Nothing the page could fetch: no attribute anywhere names a resource.
    for element in parse(document).iter():
        assert not {"src", "href", "xlink:href", "srcset", "data", "action"} & set(element.attrib), element.tag


def test_failed_report_escapes_and_shows_the_failure(failed):
    document = deploy_html.render_html(failed)
    assert "<script>" not in document and "alert(1)</script>" not in document
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; &quot;quoted&quot; &#x27;single&#x27;" in document
    root = parse(document)
    assert text_of(root.find(".//span[@id='result']")) == "FAILED"
    rows = by_class(root, "g", "host-row")
    assert [r.get("data-host") for r in rows] == ["web-1a-1", "web-1a-2", "web-1b-1", "web-1c-1",
                                                   "web-1a-3", "web-1b-2", "web-1c-2"]
    assert [r.get("data-status") for r in rows] == ["deployed"] + ["rolled_back"] * 3 + ["not_started"] * 3
    batches = by_class(root, "g", "batch")
    assert [(b.get("data-batch"), b.get("data-state")) for b in batches] == [
        ("1", "deployed"), ("2", "rolled_back"), ("3", "not_started")]
    assert [len(by_class(b, "g", "host-row")) for b in batches] == [1, 3, 3]
    # The failure: in the header with its reason, as a marker on its row (error in the tooltip)
    # and as visible text on the row; the hosts rolled back with their batch carry no marker.
    failure = root.find(".//div[@class='failure']")
    assert "web-1b-1" in text_of(failure) and EVIL in text_of(failure)
    marks = {r.get("data-host"): by_class(r, "g", "failure-mark") for r in rows}
    assert [h for h, m in marks.items() if m] == ["web-1b-1"]
    assert EVIL in text_of(marks["web-1b-1"][0].find("title"))
    status = by_class(rows[2], "text", "status")[0]
    assert "failed, rolled back to 1.4.2" in text_of(status)
    line = by_class(rows[2], "text", "errline")[0]  # visible text under the bars: the reason
    assert "health gate: GET /healthz said <script>alert(1)</script> & \"quoted\"" in line.find("title").tail
    assert [r.get("data-host") for r in rows if by_class(r, "text", "errline")] == ["web-1b-1"]
    assert "rolled back with its batch (web-1b-1 failed)" in text_of(by_class(rows[1], "text", "status")[0])
    # Bars: rollback segments on batch 2, none on the hosts that never started.
    assert by_class(rows[2], "rect", "rollback") and by_class(rows[2], "rect", "install")
    assert not by_class(rows[2], "rect", "return")
    for row in rows[4:]:
        assert not by_class(row, "rect", "seg") and "not started" in text_of(row)
    metrics = root.find(".//g[@id='lb-metrics']")
    points = failed["lb_metrics"]["points"]
    assert metrics.get("data-requests") == str(sum(p["requests"] for p in points))
    assert metrics.get("data-errors") == str(sum(p["errors"] for p in points)) != "0"


def test_succeeded_report(succeeded):
    root = parse(deploy_html.render_html(succeeded))
    assert text_of(root.find(".//span[@id='result']")) == "SUCCEEDED"
    assert "succeeded" in root.find(".//span[@id='result']").get("class")
    assert root.find(".//div[@class='failure']") is None
    rows = by_class(root, "g", "host-row")
    assert len(rows) == sum(len(b["hosts"]) for b in succeeded["batches"]) == 7
    assert {r.get("data-status") for r in rows} == {"deployed"}
    batches = by_class(root, "g", "batch")
    assert [(b.get("data-batch"), b.get("data-state")) for b in batches] == [(str(n), "deployed") for n in (1, 2, 3)]
    assert "batch 1 (deployed)" in text_of(batches[0]) and "canary" in text_of(batches[0])
    for row in rows:  # every phase drawn, in time order, none overlapping the next
        segs = by_class(row, "rect", "seg")
        assert [s.get("class").split()[1] for s in segs] == ["drain", "install", "health", "return"]
        xs = [(float(s.get("x")), float(s.get("x")) + float(s.get("width"))) for s in segs]
        assert all(a[1] <= b[0] + 0.11 for a, b in itertools.pairwise(xs))
    points = succeeded["lb_metrics"]["points"]
    metrics = root.find(".//g[@id='lb-metrics']")
    assert int(metrics.get("data-requests")) == sum(p["requests"] for p in points)
    assert metrics.get("data-errors") == "0"
    assert f"{sum(p['requests'] for p in points):,} requests in total" in text_of(metrics)
    assert len(by_class(metrics, "rect", "req")) == len(points)
    # The x axis is the same in both SVGs: a given second maps to the same pixel.
    ticks = [[(t.get("x"), t.text) for t in by_class(svg, "text", "tick") if t.text and t.text[-1] in "sm"
              and t.text[0].isdigit()] for svg in root.iter("svg")]
    assert ticks[0] and set(ticks[1]) <= set(ticks[0])


def test_older_report_without_times_or_metrics():
    """build_report's output as it is today: no times, no started epoch, no lb_metrics."""
    plan = {"skipped": [], "batches": [["web-1a-1"], ["web-1b-1", "web-1c-1"]]}
    results = [host("web-1a-1", 1, at=1.0), host("web-1b-1", 2, at=20.0)]
    for result in results:
        del result["times"]
    params = {"app": "sampleapp", "env": "staging", "version": "2.0.0", "started": START, "plan": plan,
              "hosts": results, "aborted": False}
    report = report_module.build_report(params, now=START + 50)
    root = parse(deploy_html.render_html(report))
    rows = by_class(root, "g", "host-row")
    assert [r.get("data-status") for r in rows] == ["deployed", "deployed", "not_started"]
    assert not by_class(root, "rect", "seg")
    assert root.find(".//g[@id='lb-metrics']") is None
    assert "no recorded times" in text_of(root)


def test_large_fleet_rows_fit():
    names = [f"web-1{'abc'[n % 3]}-{n}" for n in range(200)]
    plan = {"skipped": [], "batches": [names[:1]] + [names[i:i + 20] for i in range(1, 200, 20)]}
    results = [host(n, b, at=b * 30.0 + i * 0.2) for b, batch in enumerate(plan["batches"], 1)
               for i, n in enumerate(batch)]
    root = parse(deploy_html.render_html(build(plan, results, seconds=len(plan["batches"]) * 30 + 40)))
    rows = by_class(root, "g", "host-row")
    assert len(rows) == 200 and len(by_class(root, "g", "batch")) == 11
    heights = {float(by_class(r, "rect", "row-bg")[0].get("height")) for r in rows}
    assert heights == {14.0}
    svg = root.find(".//svg")
    assert float(svg.get("height")) < 200 * 14 + 11 * 24 + 100


def test_hostile_and_odd_values():
    evil = '"><script>x()</script>&amp;'
    report = {"app": evil, "env": "e<nv", "version": "1'2", "result": "failed", "seconds": "12.5",
              "batches": [{"batch": "1", "state": evil, "hosts": [
                  {"host": evil, "status": "rollback_failed", "az": evil, "instance_id": evil, "error": evil,
                   "rollback_error": evil, "times": {"out": "bad", "drained": START + 3, "rollback": START + 5}},
              ]}], "lb_metrics": {"points": [{"t": "x"}, {"t": START, "requests": "7", "errors": None}]}}
    document = deploy_html.render_html(report)
    assert "<script>" not in document
    root = parse(document)
    row = by_class(root, "g", "host-row")[0]
    assert row.get("data-host") == evil and row.get("data-status") == "rollback_failed"
    assert by_class(row, "rect", "rollback-failed") and by_class(row, "g", "failure-mark")
    assert root.find(".//g[@id='lb-metrics']").get("data-requests") == "7"


# -- stopped by an alarm: the whole deploy switched back -------------------------------------------

ALARM = {"kind": "alarm", "alarm": "sampleapp-prod-web-5xx", "fired_at": START + 125.0,
         "reason": "Threshold Crossed: 1 datapoint [14.0] was greater than the threshold (5.0)."}


@pytest.fixture
def alarmed():
    """Three batches deployed, the alarm fired in the last one's bake: the rollback switched back
    batches 3, 2 and 1 (web-1b-2's switch back failed); batch 4 never started."""
    plan = {"skipped": [], "batches": [["web-1a-1"], ["web-1a-2", "web-1b-1"], ["web-1a-3", "web-1b-2"], ["web-1c-3"]]}
    outcomes = [{"results": [host(n, b, at=b * 30.0 + i * 0.4) for i, n in enumerate(batch)], "lost": []}
                for b, batch in enumerate(plan["batches"][:3], start=1)]
    stop = deploy_rollout.stop_record(ALARM)
    for entry in deploy_rollout.rollback_batches(outcomes, ALARM):
        at = 130.0 + 20 * (3 - entry["batch"])
        results = {n: {"host": n, "status": "rolled_back", "version_after": "1.4.2"} for n in entry["hosts"]}
        if "web-1b-2" in results:
            results["web-1b-2"].update(status="rollback_failed", version_after="unknown", rollback_error="health gate: 502")
        service = {"out": {h["instance_id"]: {"ok": True, "lifecycle_state": "Standby"}
                           for h in deploy_rollout.final_results(outcomes) if h["host"] in entry["hosts"]},
                   "in": {}, "times": {"out": START + at, "back": START + at + 15}}
        service["in"] = {iid: {"ok": True, "lifecycle_state": "InService"} for iid in service["out"]}
        outcomes.append(deploy_rollout.rollback_outcome(entry["batch"], entry["hosts"], entry["hosts"], results,
                                                        outcomes, ALARM, service=service))
    params = {"app": "sampleapp", "env": "prod", "version": "2.0.0", "started": START, "plan": plan,
              "hosts": deploy_rollout.final_results(outcomes), "aborted": True, "stop": ALARM,
              "rollback_on_failure": "batch"}
    report = report_module.build_report(params, now=START + 200)
    report["started"] = START
    assert report["stopped_by"] == stop
    return report


def test_a_report_stopped_by_an_alarm_names_it_and_the_batches_switched_back(alarmed):
    assert alarmed["result"] == "failed" and alarmed["rolled_back_batches"] == [3, 2, 1]
    stop = alarmed["stopped_by"]
    assert (stop["kind"], stop["alarm"], stop["fired_at"]) == ("alarm", "sampleapp-prod-web-5xx", "2026-09-21T14:15:25Z")
    assert [b["state"] for b in alarmed["batches"]] == ["rolled_back", "rolled_back", "rollback_failed", "not_started"]
    lines = report_module.summarise(alarmed)
    assert lines[1] == f"stopped: {stop['line']}"
    assert lines[2] == "switched back with the whole deploy: batches 3, 2, 1 (5 host(s), newest first)"
    # The failure: the alarm first, then the one host whose switch back failed; not the others.
    assert report_module.failure_line(alarmed) == (
        f"{stop['line']}; web-1b-2 (rollback_failed): rollout: {stop['line']}; rollback: health gate: 502")

    root = parse(deploy_html.render_html(alarmed))
    failure = [text_of(li) for li in root.find(".//div[@class='failure']").iter("li")]
    assert failure[0] == f"stopped: {stop['line']}" and len(failure) == 2 and "web-1b-2" in failure[1]
    facts = {text_of(d.find("dt")): text_of(d.find("dd")) for d in root.find(".//dl").findall("div")}
    assert facts["stopped by"] == "alarm sampleapp-prod-web-5xx"
    assert facts["switched back with the deploy"] == "batches 3, 2, 1"
    mark = root.find(".//g[@id='stopped-by']")
    assert mark.get("data-alarm") == "sampleapp-prod-web-5xx" and mark.get("data-fired") == stop["fired_at"]
    assert text_of(mark.find("title")) == stop["line"]
    rows = {r.get("data-host"): r for r in by_class(root, "g", "host-row")}
    assert [h for h, r in rows.items() if by_class(r, "g", "failure-mark")] == ["web-1b-2"]
    assert by_class(rows["web-1a-1"], "text", "status")[0].find("title").text == "switched back to 1.4.2 with the deploy"
    # The deploy's phases, then the switch back, on the same row.
    segs = [s.get("class").split()[1] for s in by_class(rows["web-1a-1"], "rect", "seg")]
    assert segs == ["drain", "install", "health", "return", "rollback"]


def test_the_report_module_takes_the_stop(tmp_path):
    plan = {"skipped": [], "batches": [["web-1a-1"]]}
    args = {"path": str(tmp_path / "r.json"), "app": "sampleapp", "env": "prod", "version": "2.0.0",
            "started": START, "plan": plan, "hosts": [host("web-1a-1", 1, at=1.0)], "aborted": True,
            "stop": {"kind": "abort", "reason": "checkpoint 1: an operator aborted (p99 doubled)"},
            "rollback_on_failure": "all"}
    result = run_module("ec2fleet.fleet.deploy_report", args)
    assert result.get("failed") is not True, result
    assert result["report"]["stopped_by"]["line"] == "checkpoint 1: an operator aborted (p99 doubled)"
    assert result["report"]["rollback_on_failure"] == "all" and result["report"]["rolled_back_batches"] == []
    assert result["failure"] == "checkpoint 1: an operator aborted (p99 doubled)"
    bad = run_module("ec2fleet.fleet.deploy_report", dict(args, stop={"kind": "alarm"}))
    assert bad["failed"] is True and bad["msg"] == "deploy_report: a stop of kind alarm needs the alarm's name (alarm)"


def test_write_html_is_atomic(tmp_path, succeeded):
    target = tmp_path / "deploys" / "deploy.html"
    assert deploy_html.write_html(succeeded, str(target)) == str(target)
    assert target.read_text(encoding="utf-8") == deploy_html.render_html(succeeded)
    assert [p.name for p in target.parent.iterdir()] == ["deploy.html"]


# -- in a real browser --------------------------------------------------------------------------

def png_pixels(path):
    """(width, height, rows of RGB tuples) of an 8-bit RGB/RGBA non-interlaced PNG (Chromium's)."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, chunks, header = 8, [], None
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            chunks.append(body)
        pos += 12 + length
    width, height, depth, colour, _, _, interlace = header
    assert depth == 8 and colour in (2, 6) and not interlace
    step = 3 if colour == 2 else 4
    raw, stride = zlib.decompress(b"".join(chunks)), width * step
    rows, previous = [], bytearray(stride)
    for y in range(height):
        kind, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - step] if i >= step else 0
            b, c = previous[i], previous[i - step] if i >= step else 0
            if kind == 1:
                line[i] = (line[i] + a) & 255
            elif kind == 2:
                line[i] = (line[i] + b) & 255
            elif kind == 3:
                line[i] = (line[i] + (a + b) // 2) & 255
            elif kind == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        rows.append([tuple(line[x:x + 3]) for x in range(0, stride, step)])
        previous = line
    return width, height, rows


def test_rendered_in_chromium(tmp_path, failed, succeeded):
    page = tmp_path / "deploy-report.html"
    deploy_html.write_html(failed, str(page))
    dom, seconds = chromium(tmp_path, "--dump-dom", page.as_uri())
    found = DomCounter()
    found.feed(dom)
    assert found.result == "FAILED"
    assert found.rows == [(h["host"], h["status"]) for b in failed["batches"] for h in b["hosts"]]
    assert found.batches == [("1", "deployed"), ("2", "rolled_back"), ("3", "not_started")]
    assert found.metrics and found.metrics["data-errors"] != "0"
    assert "<script>alert" not in dom

    reports = REPO / "reports"
    reports.mkdir(exist_ok=True)
    shot = reports / "deploy-report-sample.png"
    shot.unlink(missing_ok=True)
    _, shot_seconds = chromium(tmp_path, f"--screenshot={shot}", "--window-size=1400,900", page.as_uri())
    assert shot.exists(), "Chromium wrote no screenshot"
    width, height, rows = png_pixels(shot)
    assert (width, height) == (1400, 900)
    colours = {px for row in rows[::2] for px in row[::2]}

    def near(rgb):
        return any(sum(abs(a - b) for a, b in zip(rgb, px, strict=True)) <= 12 for px in colours)
    # The FAILED badge, and the phase colours of the bars: the SVG was really drawn.
    for name, rgb in {"result badge": (0xC6, 0x28, 0x28), "draining": (0xF4, 0xA3, 0x40),
                      "installing": (0x3F, 0x6F, 0xB5), "rolling back": (0x9C, 0x5F, 0xB5)}.items():
        assert near(rgb), f"no {name} colour on the screenshot"
    print(f"chromium: dump-dom {seconds:.1f}s, screenshot {shot_seconds:.1f}s")

    other = tmp_path / "succeeded.html"
    deploy_html.write_html(succeeded, str(other))
    dom, _ = chromium(tmp_path, "--dump-dom", other.as_uri())
    found = DomCounter()
    found.feed(dom)
    assert found.result == "SUCCEEDED" and len(found.rows) == 7 and len(found.batches) == 3
    assert re.search(r'data-requests="\d+"', dom)

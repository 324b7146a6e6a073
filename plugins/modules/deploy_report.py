#!/usr/bin/python
"""Ansible module: write a rolling deployment's JSON report and build its printed summary."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: deploy_report
short_description: Write the JSON report of a rolling deployment and summarise it
description:
  - Collects the per-host results that C(playbooks/deploy.yml) records (C(deploy_result)) into
    one JSON document (batches with their hosts, timings per step, versions before and after,
    result) written to O(path), and returns a readable summary for the play to print.
  - Beside it, the same report as one self-contained HTML page (same name, C(.html)) with a timeline,
    a row per host and its phases (out of service, installing, health wait, back in service,
    rolled back), batch boundaries, the failure, what stopped the rollout (O(stop)) and when, and the
    load balancer's requests and errors over the same time axis when O(lb_metrics) is given. It has
    no external scripts, styles or fonts.
  - When an alarm, an operator's abort or a checkpoint nobody resumed stopped the rollout, the report
    names it (RV(report.stopped_by)) and the batches the whole-deploy rollback switched back
    (RV(report.rolled_back_batches)); their hosts (C(rollback_scope=deploy)) are not counted as
    failures of their own.
  - Runs on the controller. Writes the report in check mode too (it changes no managed host).
version_added: "0.1.0"
author: ec2-fleet project (!UNKNOWN)
options:
  path:
    description: Where to write the JSON report (parent directories are created).
    type: path
    required: true
  app:
    description: Application name.
    type: str
    required: true
  env:
    description: Environment name.
    type: str
    required: true
  version:
    description: The release being deployed.
    type: str
    required: true
  started:
    description: Start of the deployment, seconds since the epoch (UTC).
    type: float
    required: true
  plan:
    description: "The planner's output: a dict with C(skipped) (list of hosts) and C(batches) (list of lists of hosts)."
    type: dict
    required: true
  hosts:
    description: The C(deploy_result) of every host that was worked on.
    type: list
    elements: dict
    default: []
  aborted:
    description: Whether the rollout stopped on a failure.
    type: bool
    default: false
  canary:
    description: Hosts in the first batch when it is a canary (0 when there is none); labels it in the HTML page.
    type: int
    default: 0
  stop:
    description:
      - Why the rollout stopped, as the C(ec2fleet.fleet.rollback_batches) filter takes it - C(kind)
        (V(failure), V(alarm), V(abort) or V(timeout)), C(alarm) (the alarm's name), C(reason)
        (CloudWatch's state reason, the operator's note) and C(fired_at) (epoch seconds or ISO-8601 text).
      - Omitted or null when the rollout did not stop.
    type: dict
  rollback_on_failure:
    description: The deploy's C(deploy_rollback_on_failure), recorded in the report.
    type: str
    choices: [batch, all]
    default: batch
  lb_metrics:
    description:
      - The load balancer's numbers over the deployment, drawn under the timeline.
      - "C(source) (str), C(period) (seconds) and C(points), a list of C(t) (epoch seconds, start of the period),
        C(requests) and C(errors)."
    type: dict
"""

EXAMPLES = r"""
- name: Write the report
  ec2fleet.fleet.deploy_report:
    path: reports/deploys/deploy-sampleapp-prod-2.0.0.json
    app: sampleapp
    env: prod
    version: "2.0.0"
    started: "{{ deploy_started }}"
    plan: "{{ deploy_plan }}"
    hosts: "{{ deploy_results }}"
    aborted: "{{ deploy_aborted }}"
    stop: "{{ deploy_stop | default(omit) }}"
    rollback_on_failure: "{{ deploy_rollback_on_failure }}"
  delegate_to: localhost
  register: deploy_report
"""

RETURN = r"""
report:
  description: The report written to O(path).
  returned: always
  type: dict
  contains:
    stopped_by:
      description:
        - What stopped the rollout (O(stop)), normalized - C(kind), C(alarm), C(reason), C(fired_at)
          (ISO-8601, UTC), C(fired) (epoch seconds) and C(line) (one line saying it); null when it did not stop.
      type: dict
      sample: {kind: alarm, alarm: sampleapp-prod-web-5xx, fired_at: "2026-12-01T05:56:34Z", fired: 1796104594.0,
               reason: "Threshold Crossed: 1 datapoint [12.0] was greater than the threshold (5.0).",
               line: "alarm sampleapp-prod-web-5xx went to ALARM at 2026-12-01T05:56:34Z: Threshold Crossed: ..."}
    rolled_back_batches:
      description: The batches whose hosts the whole-deploy rollback switched back, newest first.
      type: list
      elements: int
      sample: [3, 2, 1]
    rollback_on_failure:
      description: O(rollback_on_failure).
      type: str
html_path:
  description: Where the HTML page was written.
  returned: always
  type: str
summary:
  description: Printable summary, one line per batch and host, then the paths of the JSON and HTML reports.
  returned: always
  type: list
  elements: str
failure:
  description: One line naming the failed hosts and why (empty on success).
  returned: always
  type: str
"""

import json
import os
import time

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.ec2fleet.fleet.plugins.module_utils.deploy_html import write_html
from ansible_collections.ec2fleet.fleet.plugins.module_utils.deploy_rollout import (
    left_out_of_service,
    own_failure,
    rolled_back_batches,
    stop_record,
)


def _float(value, default=0.0):
    try:
        return float(value)
    except (TypeError, ValueError):
        return default


def build_report(params, now=None):
    now = time.time() if now is None else now
    by_host = {h.get("host"): h for h in params["hosts"] or []}
    batches = []
    for number, names in enumerate(params["plan"].get("batches", []), start=1):
        hosts = [by_host.get(name, {"host": name, "status": "not_started"}) for name in names]
        # A host whose instance was terminated before it left service is left alone: not a failure.
        statuses = {h.get("status") for h in hosts} - {"vanished"}
        if not statuses:
            state = "vanished"
        elif statuses <= {"not_started"}:
            state = "not_started"
        elif statuses <= {"deployed"}:
            state = "deployed"
        elif "rollback_failed" in statuses:
            state = "rollback_failed"
        elif "unreachable" in statuses:
            state = "unreachable"
        elif statuses & {"failed", "not_deployed"}:
            state = "failed"
        elif "rolled_back" in statuses:
            state = "rolled_back"
        else:
            state = "incomplete"
        seconds = [_float(h.get("seconds", {}).get("total")) for h in hosts if h.get("seconds")]
        waits = [_float(h.get("seconds", {}).get("waits")) for h in hosts if h.get("seconds", {}).get("waits") is not None]
        batch_seconds = max(seconds) if seconds else 0.0
        batches.append({
            "batch": number,
            "state": state,
            "hosts": hosts,
            "seconds": round(batch_seconds, 2),
            # Time not spent in the drain and health waits (the tool's own overhead): the slowest
            # host's total minus its waits.
            "overhead_seconds": round(max((_float(h.get("seconds", {}).get("total"))
                                           - _float(h.get("seconds", {}).get("waits"))
                                           for h in hosts if h.get("seconds", {}).get("waits") is not None),
                                          default=0.0), 2) if waits else None,
        })
    failed_first = [h for h in by_host.values() if own_failure(h)]
    result = "failed" if params["aborted"] or failed_first else "succeeded"
    return {
        "app": params["app"],
        "env": params["env"],
        "version": params["version"],
        "result": result,
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(_float(params["started"]))),
        "started": _float(params["started"]),
        "canary": params.get("canary") or 0,
        "lb_metrics": params.get("lb_metrics"),
        "seconds": round(now - _float(params["started"]), 2),
        "skipped": params["plan"].get("skipped", []),
        "batches": batches,
        "versions_before": sorted({h.get("version_before") or "(none)" for h in by_host.values()}),
        "versions_after": sorted({h.get("version_after") or "(none)" for h in by_host.values()}),
        # Instances this run took out of service and did not put back (the deploy lock keeps them).
        "left_out_of_service": left_out_of_service(by_host.values()),
        "stopped_by": stop_record(params.get("stop")),
        "rolled_back_batches": rolled_back_batches(by_host.values()),
        "rollback_on_failure": params.get("rollback_on_failure") or "batch",
    }


def summarise(report):
    lines = [
        f"{report['app']} {report['version']} in {report['env']}: {report['result'].upper()} "
        f"in {report['seconds']:.1f}s, {sum(len(b['hosts']) for b in report['batches'])} host(s) in "
        f"{len(report['batches'])} batch(es), {len(report['skipped'])} skipped (already on {report['version']})",
    ]
    stop = report.get("stopped_by")
    if stop:
        lines.append(f"stopped: {stop['line']}")
    if report.get("rolled_back_batches"):
        moved = sum(1 for b in report["batches"] for h in b["hosts"] if h.get("rollback_scope") == "deploy")
        lines.append(f"switched back with the whole deploy: batches {', '.join(map(str, report['rolled_back_batches']))} "
                     f"({moved} host(s), newest first)")
    for batch in report["batches"]:
        overhead = "" if batch["overhead_seconds"] is None else f", overhead {batch['overhead_seconds']:.1f}s"
        lines.append(f"batch {batch['batch']}: {batch['state']} ({batch['seconds']:.1f}s{overhead})")
        for host in batch["hosts"]:
            detail = ""
            if host.get("status") == "deployed":
                s = host.get("seconds", {})
                detail = (f" drain {_float(s.get('out_of_service')):.1f}s, deploy {_float(s.get('deploy')):.1f}s, "
                          f"in service {_float(s.get('back_in_service')):.1f}s")
            elif host.get("error"):
                detail = f" - {host['error']}"
                if host.get("rollback_error"):
                    detail += f"; rollback: {host['rollback_error']}"
            lines.append(f"  {host.get('host')}: {host.get('version_before') or '(none)'} -> "
                         f"{host.get('version_after') or '-'} [{host.get('status')}]{detail}")
    return lines


def failure_line(report):
    """The hosts that failed on their own account; after an alarm, an abort or a timeout, why first."""
    stop = report.get("stopped_by")
    lines = [stop["line"]] if stop and stop["kind"] != "failure" else []
    for host in (h for b in report["batches"] for h in b["hosts"] if own_failure(h)):
        rollback = f"; rollback: {host['rollback_error']}" if host.get("rollback_error") else ""
        lines.append(f"{host.get('host')} ({host.get('status')}): {host.get('error', '')}{rollback}")
    return "; ".join(lines)


def main():
    module = AnsibleModule(
        argument_spec={
            "path": {"type": "path", "required": True},
            "app": {"type": "str", "required": True},
            "env": {"type": "str", "required": True},
            "version": {"type": "str", "required": True},
            "started": {"type": "float", "required": True},
            "plan": {"type": "dict", "required": True},
            "hosts": {"type": "list", "elements": "dict", "default": []},
            "aborted": {"type": "bool", "default": False},
            "canary": {"type": "int", "default": 0},
            "lb_metrics": {"type": "dict"},
            "stop": {"type": "dict"},
            "rollback_on_failure": {"type": "str", "choices": ["batch", "all"], "default": "batch"},
        },
        supports_check_mode=True,
    )
    try:
        report = build_report(module.params)
    except ValueError as exc:  # a stop that does not say why
        module.fail_json(msg=f"deploy_report: {exc}")
    path = module.params["path"]
    html_path = os.path.splitext(path)[0] + ".html"
    try:
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        tmp = path + ".tmp"
        with open(tmp, "w", encoding="utf-8") as handle:
            json.dump(report, handle, indent=2, sort_keys=True)
        os.replace(tmp, path)
        write_html(report, html_path)
    except OSError as exc:
        module.fail_json(msg=f"cannot write the deploy report to {path}: {exc}")
    summary = [*summarise(report), f"report: {path}", f"html: {html_path}"]
    module.exit_json(changed=False, report=report, summary=summary, failure=failure_line(report), path=path,
                     html_path=html_path)


if __name__ == "__main__":
    main()

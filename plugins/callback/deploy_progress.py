"""Callback plugin: one progress line per step of each deploy batch (also in AWX job output)."""

from __future__ import annotations

DOCUMENTATION = r"""
name: deploy_progress
type: aggregate
short_description: Print a rolling deploy's progress, batch by batch
description:
  - Follows C(playbooks/deploy.yml) and prints one line when a batch starts, when all of its hosts
    are out of service, when all are healthy on the new release, and when the batch ends, each with
    the batch number out of the total, the hosts, the counts so far, the time since the rollout
    began and an estimate of the time left (the mean duration of the batches done so far, times
    the batches still to go).
  - The deploy tasks report their steps as a C(deploy_progress) fact (C(event) C(plan),
    C(batch_start), C(host) or C(batch_end)); the plugin prints nothing for other playbooks.
  - Lines go through Ansible's display, so AWX, ansible-runner and ansible-navigator show them in
    the job output like any other line.
requirements:
  - enable it in C(callbacks_enabled) (the project's C(ansible.cfg) does)
"""

import time

from ansible.plugins.callback import CallbackBase

PHASES = ("out", "healthy", "in")
PHASE_WORDS = {"out": "out of service", "healthy": "healthy", "in": "back in service"}


def clock(seconds):
    seconds = max(0, round(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


class DeployProgress:
    """The bookkeeping behind the lines, apart from Ansible so that it can be tested alone."""

    def __init__(self, now=time.monotonic):
        self.now = now
        self.started = None
        self.batches = 0
        self.batch = 0
        self.hosts = []
        self.batch_started = None
        self.done_durations = []
        self.phases = {}
        self.failed = []

    def elapsed(self):
        return self.now() - self.started if self.started is not None else 0.0

    def remaining(self):
        """Mean duration of finished batches times the batches left (this one counted as half done)."""
        if not self.done_durations:
            return None
        mean = sum(self.done_durations) / len(self.done_durations)
        left = self.batches - len(self.done_durations)
        in_batch = self.now() - self.batch_started if self.batch_started and self.batch > len(self.done_durations) else 0
        return max(0.0, left * mean - in_batch)

    def tail(self):
        left = self.remaining()
        estimate = "estimate after the first batch" if left is None else f"about {clock(left)} left"
        return f"elapsed {clock(self.elapsed())}, {estimate}"

    def head(self):
        return f"deploy: batch {self.batch} of {self.batches}"

    def counts(self):
        total = len(self.hosts)
        parts = [f"{PHASE_WORDS[p]} {sum(1 for h in self.hosts if p in self.phases.get(h, ()))}/{total}"
                 for p in PHASES]
        if self.failed:
            parts.append(f"failed {len(self.failed)}")
        return ", ".join(parts)

    def handle(self, event):
        """Takes one `deploy_progress` fact; returns the lines to print."""
        kind = event.get("event")
        if kind == "plan":
            self.started = self.now()
            self.batches = int(event.get("batches") or 0)
            hosts = int(event.get("hosts") or 0)
            return [f"deploy: {event.get('version', '?')} to {hosts} host(s) in {self.batches} batch(es)"
                    + (f", {int(event['skipped'])} already on it" if event.get("skipped") else "")]
        if kind == "batch_start":
            if self.started is None:
                self.started = self.now()
            self.batch = int(event.get("batch") or self.batch + 1)
            self.batches = int(event.get("batches") or self.batches)
            self.hosts = list(event.get("hosts") or [])
            self.batch_started = self.now()
            self.phases = {}
            self.failed = []
            return [f"{self.head()}: {len(self.hosts)} host(s) {', '.join(self.hosts)} | {self.tail()}"]
        if kind == "host":
            host, phase = event.get("host"), event.get("phase")
            if phase == "failed":
                self.failed.append(host)
                return [f"{self.head()}: {host} FAILED: {event.get('reason', '')} | {self.counts()} | {self.tail()}"]
            # One host, or several at once (the batch's coordinator reports its service steps).
            named = [h for h in (event.get("hosts") or [host]) if h in self.hosts]
            if phase not in PHASES or not named:
                return []
            for name in named:
                self.phases.setdefault(name, set()).add(phase)
            if all(phase in self.phases.get(h, ()) for h in self.hosts):
                return [f"{self.head()}: all {PHASE_WORDS[phase]} | {self.counts()} | {self.tail()}"]
            return []
        if kind == "rollback":
            batches = [str(b) for b in event.get("batches") or []]
            return [f"deploy: switching back {int(event.get('hosts') or 0)} host(s) of batch(es) {', '.join(batches)}, "
                    f"newest first | elapsed {clock(self.elapsed())}"]
        if kind == "batch_end":
            took = self.now() - self.batch_started if self.batch_started else 0.0
            self.done_durations.append(took)
            state = event.get("state") or ("failed" if self.failed else "deployed")
            return [f"{self.head()} {state} in {clock(took)} | {self.counts()} | {self.tail()}"]
        return []


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "ec2fleet.fleet.deploy_progress"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.progress = DeployProgress()

    def v2_runner_on_ok(self, result):
        facts = result._result.get("ansible_facts") or {}
        event = facts.get("deploy_progress")
        if isinstance(event, dict):
            for line in self.progress.handle(event):
                self._display.display(line)

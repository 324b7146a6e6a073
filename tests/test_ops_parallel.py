"""ops.run_parallel: many hosts through one bastion. At most PARALLEL_CONNECTIONS connect at once
(the bastion's MaxStartups drops a larger burst), a connection that fails before the command runs
is tried again, and a command is never run twice."""

from __future__ import annotations

import threading

import pytest

from ec2fleet import ops


class FakeResult:
    def __init__(self, exited, stdout):
        self.exited, self.stdout, self.stderr = exited, stdout, ""


class FakeConnection:
    """Counts concurrent connections; fails `open` for the first `refusals` attempts."""

    lock = threading.Lock()
    live = 0
    peak = 0

    def __init__(self, host, refusals, runs, run_error=None):
        self.host, self.refusals, self.runs, self.run_error = host, refusals, runs, run_error
        self.connected = False

    def open(self):
        if self.refusals.get(self.host.name, 0) > 0:
            self.refusals[self.host.name] -= 1
            raise ops.ConnectError("kex_exchange_identification: Connection closed by remote host")
        with FakeConnection.lock:
            FakeConnection.live += 1
            FakeConnection.peak = max(FakeConnection.peak, FakeConnection.live)
        self.connected = True

    def run(self, command, **kwargs):
        self.runs.append(self.host.name)
        threading.Event().wait(0.02)  # long enough for the workers to overlap
        if self.run_error:
            raise self.run_error
        return FakeResult(0, f"{self.host.name}: {command}")

    sudo = run

    def close(self):
        if self.connected:
            with FakeConnection.lock:
                FakeConnection.live -= 1
            self.connected = False


@pytest.fixture
def fake(monkeypatch):
    state = {"refusals": {}, "runs": [], "run_error": None, "pauses": []}
    FakeConnection.live = FakeConnection.peak = 0
    monkeypatch.setattr(ops, "connection", lambda host: FakeConnection(
        host, state["refusals"], state["runs"], state["run_error"]))
    monkeypatch.setattr(ops, "_pause", state["pauses"].append)
    return state


def hosts(n):
    return [ops.Host(name=f"web-{i:02d}", vars={}) for i in range(n)]


def test_twenty_hosts_connect_at_most_eight_at_a_time(fake):
    answers = ops.run_parallel(hosts(20), "true")
    assert sorted(answers) == [h.name for h in hosts(20)]
    assert all(code == 0 for code, _ in answers.values())
    assert 1 < FakeConnection.peak <= ops.PARALLEL_CONNECTIONS


def test_a_dropped_handshake_is_retried_and_the_command_runs_once(fake):
    fake["refusals"] = {"web-03": 2}  # dropped twice, then in
    answers = ops.run_parallel(hosts(5), "uptime")
    assert answers["web-03"] == (0, "web-03: uptime")
    assert fake["runs"].count("web-03") == 1
    assert fake["pauses"] == [1, 3]


def test_a_host_that_never_connects_is_reported_not_raised(fake):
    fake["refusals"] = {"web-01": ops.CONNECT_ATTEMPTS}
    answers = ops.run_parallel(hosts(3), "uptime")
    code, message = answers["web-01"]
    assert code == 255 and "kex_exchange_identification" in message
    assert "web-01" not in fake["runs"]
    assert answers["web-00"][0] == answers["web-02"][0] == 0


def test_a_failure_while_the_command_runs_is_not_retried(fake):
    fake["run_error"] = EOFError("connection lost")
    answers = ops.run_parallel(hosts(2), "systemctl restart nginx")
    assert all(answer == (255, "EOFError: connection lost") for answer in answers.values())
    assert sorted(fake["runs"]) == ["web-00", "web-01"]

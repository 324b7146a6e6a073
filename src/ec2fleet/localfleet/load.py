"""Continuous HTTP load through the local fleet's balancer, for tests and benchmarks.

Workers send GET requests to one loopback URL, each on a new connection (as a browser's first
request: no keep-alive to outlive a reload), bounded in count and time, and record per request
the second it was sent in and its outcome: the version the app answered with, or the failure;
and, where the local balancer names it (balancer.TARGET_HEADER), the instance that answered.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable

from ec2fleet.localfleet.balancer import TARGET_HEADER

MAX_REQUESTS = 2_000_000
MAX_SECONDS = 3600
# Never through a proxy from the environment: the balancer is on loopback.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class Load:
    """``with Load(url, workers) as load: ...``; then ``load.samples`` ([(second, outcome)]),
    ``load.errors`` (failure -> count), ``load.failed``, ``load.sent`` and ``load.answered``
    ([(second, instance id, outcome)] for the answers that named their target). ``pause``
    (seconds between a worker's requests) bounds the rate: 0 sends as fast as the fleet answers
    (the benchmark), a tenth of a second keeps a test's load from taking the machine's CPU from
    the deploy it watches. ``version_of`` reads the version from a 200 answer's body (default:
    a JSON body's "version", as the app's /version and /health answer)."""

    def __init__(self, url: str, workers: int = 4, pause: float = 0.0,
                 version_of: Callable[[bytes], str] | None = None):
        if not url.startswith(("http://127.0.0.1:", "http://localhost:")):
            raise ValueError(f"load goes to loopback only, not {url}")
        self.url = url
        self.workers = workers
        self.pause = pause
        self.version_of = version_of or (lambda body: json.loads(body)["version"])
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.samples: list[tuple[int, str]] = []
        self.errors: Counter = Counter()
        self.answered: list[tuple[int, str, str]] = []
        self.start = 0.0
        self.threads: list[threading.Thread] = []

    @property
    def sent(self) -> int:
        return len(self.samples)

    @property
    def failed(self) -> int:
        return sum(self.errors.values())

    def versions(self) -> Counter:
        return Counter(outcome for _, outcome in self.samples if outcome[:1].isdigit())

    def summary(self) -> str:
        return f"{self.sent} requests, {self.failed} failed" + (f" {dict(self.errors)}" if self.failed else "")

    def worker(self) -> None:
        while not self.stop.is_set():
            second = int(time.monotonic() - self.start)
            target = ""
            try:
                with _OPENER.open(self.url, timeout=10) as resp:
                    target = resp.headers.get(TARGET_HEADER, "")
                    outcome = self.version_of(resp.read()) if resp.status == 200 else f"HTTP {resp.status}"
            except urllib.error.HTTPError as exc:
                target = exc.headers.get(TARGET_HEADER, "") if exc.headers else ""
                outcome = f"HTTP {exc.code}"
            except (OSError, ValueError, KeyError, IndexError) as exc:
                outcome = f"error: {type(exc).__name__}"
            with self.lock:
                self.samples.append((second, outcome))
                if target:
                    self.answered.append((second, target, outcome))
                if not outcome[:1].isdigit():
                    self.errors[outcome] += 1
                if len(self.samples) >= MAX_REQUESTS or second >= MAX_SECONDS:
                    self.stop.set()
            if self.pause:
                self.stop.wait(self.pause)

    def __enter__(self):
        self.start = time.monotonic()
        self.threads = [threading.Thread(target=self.worker, daemon=True) for _ in range(self.workers)]
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=15)

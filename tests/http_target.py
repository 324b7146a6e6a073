"""A stand-in instance behind the local balancer in its tests: an HTTP server on loopback.

`/health` answers 200 at once; `/?ms=N` answers after N milliseconds; `/?fail_every=K` answers 500
to every K-th request of that path (a faulty release). Every body is ``{"version": VERSION}``.
"""

from __future__ import annotations

import itertools
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

VERSION = "9.0.0"


class Target(BaseHTTPRequestHandler):
    failing_requests = itertools.count(1)

    def do_GET(self):
        query = {k: int(v[0]) for k, v in parse_qs(urlsplit(self.path).query).items()}
        time.sleep(query.get("ms", 0) / 1000)
        every = query.get("fail_every", 0)
        status = 500 if every and next(type(self).failing_requests) % every == 0 else 200
        body = f'{{"version": "{VERSION}"}}'.encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def serve() -> ThreadingHTTPServer:
    """A Target listening on a free loopback port, served from a daemon thread (shutdown() stops it)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), Target)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server

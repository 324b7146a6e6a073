#!/usr/bin/python3
"""Test double for the application upstream (the nginx scenario runs without the app role).

Answers /health like sampleapp, echoes what nginx sent on /echo (to check proxy headers and
upstream keepalive), and serves a large compressible body on /big (gzip).
"""

import json
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keepalive from nginx needs HTTP/1.1 here too

    def _send(self, status, body, content_type="application/json"):
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        if self.path == "/health":
            self._send(200, json.dumps({"status": "ok", "version": "stub"}))
        elif self.path == "/echo":
            echo = {"request_version": self.request_version, "headers": dict(self.headers.items()),
                    "client_port": self.client_address[1]}
            self._send(200, json.dumps(echo))
        elif self.path == "/big":
            self._send(200, json.dumps({"filler": "sampleapp " * 500}))
        else:
            self._send(200, "stub backend\n", "text/plain")

    def do_POST(self):
        length = int(self.headers.get("Content-Length", 0))
        self.rfile.read(length)
        self._send(200, json.dumps({"received": length}))

    def log_message(self, *args):
        pass


if __name__ == "__main__":
    ThreadingHTTPServer(("127.0.0.1", 8000), Handler).serve_forever()

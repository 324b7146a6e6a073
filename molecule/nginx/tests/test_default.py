"""nginx in front of a stub upstream (test double for the app), TLS on with a self-signed certificate."""

from __future__ import annotations

import gzip
import json
import socket
import ssl
import subprocess

import pytest
from conftest import HTTPS_PORT, REPO, request, tls_context

SECURITY_HEADERS = ("X-Content-Type-Options", "X-Frame-Options", "Referrer-Policy", "Content-Security-Policy")


def test_installed_running_and_valid(host):
    assert host.package("nginx").is_installed
    assert host.service("nginx").is_running
    assert host.service("nginx").is_enabled
    assert host.run("nginx -t").rc == 0


def test_default_site_removed(host):
    assert not host.file("/etc/nginx/sites-enabled/default").exists
    assert "sites-enabled" not in host.file("/etc/nginx/nginx.conf").content_string


def test_health_passes_through_on_http():
    response = request("GET", "/health")
    assert response.status == 200
    assert json.loads(response.body) == {"status": "ok", "version": "stub"}


def test_http_redirects_to_https():
    response = request("GET", "/some/page?q=1")
    assert response.status == 301
    assert response.headers["Location"] == "https://127.0.0.1/some/page?q=1"


def test_https_proxies_with_hardened_headers():
    response = request("GET", "/", tls=True)
    assert response.status == 200
    assert response.body == b"stub backend\n"
    assert response.headers["Server"] == "nginx"  # server_tokens off: no version
    for name in SECURITY_HEADERS:
        assert response.headers[name], name
    assert response.headers["Strict-Transport-Security"].startswith("max-age=63072000")


def test_security_headers_on_errors_too():
    response = request("POST", "/", tls=True, body=b"x" * 100_000)
    assert response.status == 413
    assert response.headers["X-Content-Type-Options"] == "nosniff"


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3])
def test_modern_tls_accepted(version):
    context = tls_context(minimum=version, maximum=version)
    with socket.create_connection(("127.0.0.1", HTTPS_PORT), timeout=10) as raw, context.wrap_socket(raw) as tls:
        assert tls.version() == version.name.replace("v1_", "v1.")


def s_client(*options):
    # SECLEVEL=0 lets the client offer old protocols, so a refusal comes from the server.
    return subprocess.run(
        ["openssl", "s_client", "-connect", f"127.0.0.1:{HTTPS_PORT}", "-cipher", "DEFAULT@SECLEVEL=0", *options],
        input="", capture_output=True, text=True, timeout=20,
    )


def test_old_tls_refused():
    control = s_client("-tls1_2")
    assert control.returncode == 0 and "Protocol  : TLSv1.2" in control.stdout
    for option in ("-tls1", "-tls1_1"):
        out = s_client(option)
        assert out.returncode != 0, option
        assert "Cipher is (NONE)" in out.stdout, option


def test_proxy_headers_and_http11_upstream():
    echo = json.loads(request("GET", "/echo", tls=True).body)
    assert echo["request_version"] == "HTTP/1.1"
    headers = {k.lower(): v for k, v in echo["headers"].items()}
    assert "connection" not in headers  # cleared, so nginx can keep the upstream connection
    assert headers["x-forwarded-proto"] == "https"
    assert headers["x-forwarded-for"]
    assert len(headers["x-request-id"]) == 32


def test_upstream_connections_are_kept_alive(host):
    # Each worker keeps its own pool: with more requests than workers, some must share a
    # connection (same client port at the upstream) if keepalive works.
    workers = int(host.check_output("nproc"))
    ports = [json.loads(request("GET", "/echo", tls=True).body)["client_port"]
             for _ in range(2 * workers + 1)]
    assert len(set(ports)) < len(ports)


def test_gzip():
    response = request("GET", "/big", tls=True, headers={"Accept-Encoding": "gzip"})
    assert response.headers["Content-Encoding"] == "gzip"
    assert b"sampleapp" in gzip.decompress(response.body)


def test_body_size_limit():
    assert request("POST", "/", tls=True, body=b"x" * 1000).status == 200
    assert request("POST", "/", tls=True, body=b"x" * 100_000).status == 413


def test_json_access_log_with_timings(host):
    request("GET", "/echo?marker=json-log-test", tls=True)
    line = host.check_output("grep json-log-test /var/log/nginx/access.json.log | tail -n 1")
    entry = json.loads(line)
    assert entry["status"] == 200
    assert entry["method"] == "GET"
    assert entry["tls"] in ("TLSv1.2", "TLSv1.3")
    assert isinstance(entry["request_time"], float)
    assert float(entry["upstream_response_time"]) >= 0
    assert float(entry["upstream_connect_time"]) >= 0
    assert entry["upstream_addr"] == "127.0.0.1:8000"


def test_health_checks_not_logged(host):
    before = host.check_output("wc -l < /var/log/nginx/access.json.log")
    request("GET", "/health")
    request("GET", "/health", tls=True)
    assert host.check_output("wc -l < /var/log/nginx/access.json.log") == before


def test_gixy_reports_no_issue(host, tmp_path):
    rendered = tmp_path / "nginx.conf"
    rendered.write_text(host.file("/etc/nginx/nginx.conf").content_string)
    result = subprocess.run([str(REPO / ".venv" / "bin" / "gixy"), str(rendered)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "No issues found" in result.stdout

"""The nginx role's template rendered on the controller (role defaults plus variants), checked by
gixy (.venv/bin/gixy, its own venv). The Molecule scenario runs gixy on the converged config too."""

from __future__ import annotations

import subprocess

import pytest
import yaml
from app_support import REPO, run_playbook

GIXY = REPO / ".venv" / "bin" / "gixy"
ROLE = REPO / "roles" / "nginx"

VARIANTS = {
    "defaults": {},
    "tls": {"nginx_tls_enabled": True},
    "tls-no-redirect-custom-port": {"nginx_tls_enabled": True, "nginx_tls_redirect_http": False,
                                    "nginx_tls_port": 8443, "nginx_listen_ipv6": False},
    "no-gzip-unix-upstream": {"nginx_gzip_enabled": False, "nginx_upstream_servers": ["unix:/run/app.sock"],
                              "nginx_health_access_log": True},
}


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    out = tmp_path_factory.mktemp("nginx-render")
    tasks = [
        {"name": f"Render {name}", "vars": overrides, "ansible.builtin.template": {
            "src": str(ROLE / "templates" / "nginx.conf.j2"), "dest": str(out / f"{name}.conf"), "mode": "0644"}}
        for name, overrides in VARIANTS.items()
    ]
    playbook = out / "render.yml"
    playbook.write_text(yaml.safe_dump([{
        "name": "Render nginx.conf", "hosts": "localhost", "gather_facts": False,
        "vars_files": [str(ROLE / "defaults" / "main.yml"), str(ROLE / "vars" / "main.yml")], "tasks": tasks,
    }]))
    run = run_playbook(playbook)
    assert run.returncode == 0, run.stdout[-3000:]
    return {name: out / f"{name}.conf" for name in VARIANTS}


def gixy(path):
    return subprocess.run([str(GIXY), str(path)], capture_output=True, text=True)


@pytest.mark.parametrize("variant", VARIANTS)
def test_gixy_finds_no_issue(rendered, variant):
    result = gixy(rendered[variant])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "No issues found" in result.stdout


def test_gixy_does_flag_a_known_problem(rendered, tmp_path):
    # The check above can fail: the same config with a spoofable Host header is reported.
    bad = tmp_path / "bad.conf"
    bad.write_text(rendered["defaults"].read_text().replace("proxy_set_header Host $host;",
                                                            "proxy_set_header Host $http_host;"))
    result = gixy(bad)
    assert result.returncode != 0
    assert "host_spoofing" in result.stdout


def test_defaults_hold_the_required_settings(rendered):
    conf = rendered["defaults"].read_text()
    for directive in ("server_tokens off;", "keepalive 16;", "proxy_http_version 1.1;",
                      'proxy_set_header Connection "";', "client_max_body_size 1m;", "gzip on;",
                      "location = /health", "access_log /var/log/nginx/access.json.log json_timed;"):
        assert directive in conf, directive
    assert "ssl_certificate" not in conf and "sites-enabled" not in conf


def test_tls_is_modern(rendered):
    conf = rendered["tls"].read_text()
    assert "ssl_protocols TLSv1.2 TLSv1.3;" in conf
    assert "ssl_session_tickets off;" in conf
    assert "Strict-Transport-Security" in conf
    assert "return 301 https://$host$request_uri;" in conf
    custom = rendered["tls-no-redirect-custom-port"].read_text()
    assert "listen 8443 ssl http2 default_server;" in custom and "return 301" not in custom
    assert "[::]" not in custom

"""Config changes are validated before they go live and applied by reload, never restart.

Runs after test_default.py; it ends by converging back to the scenario's settings.
"""

from conftest import request, run_playbook


def master_pid(host) -> str:
    return host.check_output("cat /run/nginx.pid")


def test_change_is_reloaded_not_restarted(host):
    pid = master_pid(host)
    assert request("POST", "/", tls=True, body=b"x" * 100_000).status == 413
    run = run_playbook("converge.yml", "-e", "nginx_client_max_body_size=128k")
    assert run.returncode == 0, run.stdout[-3000:]
    assert "RUNNING HANDLER [ec2fleet.fleet.nginx : Validate the nginx configuration]" in run.stdout
    assert run.stdout.index("Validate the nginx configuration") < run.stdout.index("RUNNING HANDLER [ec2fleet.fleet.nginx : Reload nginx]")
    assert request("POST", "/", tls=True, body=b"x" * 100_000).status == 200
    assert master_pid(host) == pid


def test_invalid_config_never_goes_live(host):
    pid = master_pid(host)
    live = host.file("/etc/nginx/nginx.conf").content_string
    run = run_playbook("converge.yml", "-e", "nginx_client_max_body_size=not-a-size")
    assert run.returncode != 0
    assert "failed to validate" in run.stdout
    assert host.file("/etc/nginx/nginx.conf").content_string == live
    assert request("GET", "/health").status == 200
    assert master_pid(host) == pid


def test_back_to_scenario_settings(host):
    run = run_playbook("converge.yml")
    assert run.returncode == 0, run.stdout[-3000:]
    assert request("POST", "/", tls=True, body=b"x" * 100_000).status == 413

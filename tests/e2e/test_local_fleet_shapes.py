"""End to end on a local fleet of production's shapes: two Auto Scaling Groups, one of them
fixed-size on a second target group, and an ASG termination under load that fails no request.

Runs with `tools/test e2e` (EC2FLEET_E2E=1); the default pytest run leaves it out. It uses its
own fleet, `shapes` (own emulator, docker network, VPC range and balancer ports), never the
`local` one, and takes it down however it ends. No site.yml here (that is test_local_fleet.py's
job): each web instance runs a small HTTP server that answers with its instance id, enough to
see where the balancer sends every request. 4 containers, 5 with the ASG's replacement.
"""

from __future__ import annotations

import http.client
import shutil
import threading
import time
from pathlib import Path

import pytest

from ec2fleet.localfleet import containers, control
from ec2fleet.localfleet.world import GroupSpec

pytestmark = [pytest.mark.docker, pytest.mark.e2e]
REPO = Path(__file__).resolve().parents[2]
NAME = "shapes"
GROUPS = [GroupSpec("api", 1, fixed=True, target_group="second")]
DELAY = 5  # the fleet's deregistration delay (FleetSpec.deregistration_delay)

# The stand-in app: /health for the checks, /slow holds a request for a second (so some are in
# flight when an instance is taken out), every answer names the instance that gave it.
APP = """
import http.server, socketserver, sys, time
IID = sys.argv[1].encode()
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path.startswith("/slow"):
            time.sleep(1)
        self.send_response(200)
        self.send_header("Content-Length", str(len(IID)))
        self.end_headers()
        self.wfile.write(IID)
    def log_message(self, *args):
        pass
class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True
Server(("", 80), Handler).serve_forever()
"""


def get(port: int, path: str = "/", timeout: float = 10) -> tuple[int, str]:
    """One request on a new connection (as a browser's first request; no keep-alive to outlive a reload)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path, headers={"Connection": "close"})
        resp = conn.getresponse()
        return resp.status, resp.read().decode()
    finally:
        conn.close()


def members(state, group: str) -> list[str]:
    found = state.clients("autoscaling").describe_auto_scaling_groups(AutoScalingGroupNames=[group])
    return [i["InstanceId"] for i in found["AutoScalingGroups"][0]["Instances"]]


def running_instances(state) -> dict[str, dict]:
    found = {}
    pages = state.clients("ec2").get_paginator("describe_instances").paginate(
        Filters=[{"Name": "tag:ec2fleet:fleet", "Values": [NAME]}, {"Name": "instance-state-name", "Values": ["running"]}])
    for page in pages:
        for res in page["Reservations"]:
            for inst in res["Instances"]:
                found[inst["InstanceId"]] = inst
    return found


def start_app(state, iid: str) -> None:
    name = containers.container_name(NAME, iid)
    containers.docker("exec", "-i", name, "sh", "-c", "cat > /usr/local/bin/e2e-app.py", input=APP)
    containers.docker("exec", name, "systemd-run", "--unit", "e2e-app", "--collect",
                      "/usr/bin/python3", "/usr/local/bin/e2e-app.py", iid)


def served_by(port: int, want: set[str], timeout: float = 90) -> set[str]:
    """The instances that answer through the balancer's port, once all of `want` have (or time is up)."""
    seen: set[str] = set()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not want <= seen:
        try:
            status, body = get(port, timeout=5)
            if status == 200:
                seen.add(body)
        except OSError:
            pass
        time.sleep(0.1)
    return seen


@pytest.fixture(scope="module")
def fleet():
    if control.exists(NAME):
        control.down(NAME)  # left over by a killed run: the name is this test's own
    log = control.FleetState.path_for(NAME) / "fleetd.log"
    try:
        state = control.up(size=2, name=NAME, groups=GROUPS, timeout=400)
        yield state
    finally:
        if log.exists():  # what fleetd did (drains, admissions, reloads), kept past `down`
            (REPO / "reports" / "e2e").mkdir(parents=True, exist_ok=True)
            shutil.copy(log, REPO / "reports" / "e2e" / f"fleetd-{NAME}-{int(time.time())}.log")
        control.down(NAME)


@pytest.fixture(scope="module")
def ports(fleet):
    return {"web": fleet.data["lb_port"], "second": fleet.data["lb_ports"]["second"]}


def test_every_instance_of_every_group_is_a_running_container(fleet):
    web, api = members(fleet, "web"), members(fleet, "api")
    assert len(web) == 2 and len(api) == 1
    group = fleet.clients("autoscaling").describe_auto_scaling_groups(AutoScalingGroupNames=["api"])["AutoScalingGroups"][0]
    assert group["MinSize"] == group["DesiredCapacity"] == 1 < group["MaxSize"]  # fixed, a surge still fits
    instances = running_instances(fleet)
    have = {iid for iid, row in containers.list_fleet(NAME).items() if row["state"] == "running"}
    assert set(instances) == have and set(web + api) < have  # and the bastion
    names = {iid: {t["Key"]: t["Value"] for t in instances[iid]["Tags"]} for iid in web + api}
    assert {names[i]["Name"] for i in web} == {"web"} and names[api[0]]["Name"] == "api"
    assert {n["Role"] for n in names.values()} == {"web"}


def test_the_balancer_serves_through_both_groups(fleet, ports):
    web, api = members(fleet, "web"), members(fleet, "api")
    for iid in web + api:
        start_app(fleet, iid)
    assert served_by(ports["web"], set(web)) == set(web)
    assert served_by(ports["second"], set(api), timeout=30) == set(api)
    status = fleet.read_status()
    assert set(status["target_groups"]["web"]) == set(web) and set(status["target_groups"]["second"]) == set(api)


def test_asg_termination_under_load_fails_no_request(fleet, ports):
    web = members(fleet, "web")
    victim = web[1]
    results: list[tuple[float, float, str, str]] = []  # start, end, port name, answer (instance or error)
    lock = threading.Lock()
    stop = threading.Event()

    def load(port_name: str, path: str) -> None:
        while not stop.is_set():
            started = time.monotonic()
            try:
                status, body = get(ports[port_name], path)
                answer = body if status == 200 else f"HTTP {status}"
            except OSError as exc:
                answer = f"{type(exc).__name__}: {exc}"
            with lock:
                results.append((started, time.monotonic(), port_name, answer))

    threads = [threading.Thread(target=load, args=args, daemon=True)
               for args in (("web", "/"), ("web", "/"), ("web", "/slow"), ("web", "/slow"), ("second", "/"))]
    for thread in threads:
        thread.start()
    name = containers.container_name(NAME, victim)
    try:
        time.sleep(3)
        terminated_at = time.monotonic()
        # A health replacement's shape: the ASG terminates the instance and launches another.
        fleet.clients("autoscaling").terminate_instance_in_auto_scaling_group(
            InstanceId=victim, ShouldDecrementDesiredCapacity=False)
        gone_at = None
        deadline = terminated_at + 60
        while time.monotonic() < deadline:
            if name not in {row["name"] for row in containers.list_fleet(NAME).values()}:
                gone_at = time.monotonic()
                break
            time.sleep(0.2)
        time.sleep(3)  # and the load goes on a little after the container is gone
    finally:
        stop.set()
        for thread in threads:
            thread.join(30)

    failed = [r for r in results if not r[3].startswith("i-")]
    assert not failed, f"{len(failed)} of {len(results)} requests failed: {failed[:10]}"
    assert len(results) > 100
    assert gone_at is not None, "the terminated instance's container was never removed"
    # Its container stayed for the deregistration delay (the drain), then went.
    assert gone_at - terminated_at >= DELAY - 0.5, f"container removed after {gone_at - terminated_at:.1f}s"
    before = [r for r in results if r[0] < terminated_at and r[2] == "web"]
    assert {r[3] for r in before} == set(web), "both web instances had traffic before the termination"
    # No new request went to it once fleetd had seen the termination (a tick is 0.5 s; 2 cores).
    late = [r for r in results if r[3] == victim and r[0] > terminated_at + 3]
    assert not late, f"{len(late)} requests started after the termination went to {victim}: {late[:5]}"
    held = [r for r in results if r[3] == victim and r[1] > terminated_at]
    print(f"{len(results)} requests, 0 failed; {len(held)} answered by {victim} after its termination "
          f"began (in flight or before fleetd saw it); container removed {gone_at - terminated_at:.1f}s after")
    assert {r[3] for r in results if r[2] == "second"} == set(members(fleet, "api"))


def test_the_replacement_gets_traffic_only_once_it_answers(fleet, ports):
    web = members(fleet, "web")
    assert len(web) == 2  # the ASG replaced the terminated instance
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        rows = containers.list_fleet(NAME)
        if all(iid in rows for iid in web) and all(control._booted(fleet, iid) for iid in web):
            break
        time.sleep(1)
    new = [iid for iid in web if iid not in fleet.read_status()["target_groups"]["web"]]
    assert len(new) == 1, "the replacement got traffic before its app answered"
    assert {row for row in served_by(ports["web"], {"never"}, timeout=3)} == set(web) - set(new)
    start_app(fleet, new[0])
    assert served_by(ports["web"], set(web)) == set(web)

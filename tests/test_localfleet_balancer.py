"""The local balancer with several target groups: one HAProxy frontend + backend per target group
(each on its own 127.0.0.1 port), and the ALB metrics per target group and for the whole LB."""

from __future__ import annotations

import shutil
import socket
import subprocess
import threading
import time
from datetime import UTC, datetime, timedelta

import boto3
import http_target
import pytest
from ansible_collections.ec2fleet.fleet.plugins.module_utils.deploy import cloudwatch_dimension

from ec2fleet.emulator import free_port
from ec2fleet.localfleet import lbmetrics
from ec2fleet.localfleet.balancer import TARGET_HEADER, Balancer, listener, render
from ec2fleet.localfleet.load import Load

LB = "arn:aws:elasticloadbalancing:us-east-1:123456789012:loadbalancer/app/shapes-web/eb3e88bfa7a0f656"
TG_WEB = "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/shapes-web/54ff888949a76553"
TG_SECOND = "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/shapes-second/0123456789abcdef"


def test_one_frontend_and_backend_per_target_group(tmp_path):
    text = render({"second": listener("127.0.0.1:18082", {"i-3": "10.1.1.3"}),
                   "web": listener("127.0.0.1:18081", {"i-2": "10.1.2.2", "i-1": "10.1.1.1"})},
                  tmp_path / "haproxy.sock")
    sections = [line for line in text.splitlines() if not line.startswith(" ")]
    assert sections[-4:] == ["frontend web", "backend web", "frontend second", "backend second"]
    web = text[text.index("frontend web"):text.index("frontend second")]
    second = text[text.index("frontend second"):]
    assert "bind 127.0.0.1:18081" in web and "default_backend web" in web
    assert web.index("server i-1 10.1.1.1:80 check") < web.index("server i-2 10.1.2.2:80 check")
    assert "bind 127.0.0.1:18082" in second and "server i-3 10.1.1.3:80 check" in second
    assert "i-3" not in web and "i-1" not in second


def test_the_default_fleet_config_is_the_single_web_listener(tmp_path):
    text = render({"web": listener("127.0.0.1:18081", {"i-1": "10.1.1.1"})}, tmp_path / "haproxy.sock")
    sections = [line for line in text.splitlines() if line.startswith(("frontend ", "backend "))]
    assert sections == ["frontend web", "backend web"]
    assert "frontend web\n    bind 127.0.0.1:18081\n    default_backend web\nbackend web\n" in text


@pytest.mark.skipif(shutil.which("haproxy") is None, reason="needs haproxy (tools/platform packages)")
def test_haproxy_accepts_the_config_with_empty_and_full_backends(tmp_path):
    path = tmp_path / "haproxy.cfg"
    path.write_text(render({"web": listener("127.0.0.1:18081", {}),
                            "second": listener("127.0.0.1:18082", {"i-1": "10.1.1.1"}, port=8080)},
                           tmp_path / "haproxy.sock"))
    check = subprocess.run(["haproxy", "-c", "-q", "-f", str(path)], capture_output=True, text=True)
    assert check.returncode == 0, check.stderr
    assert "server i-1 10.1.1.1:8080 check" in path.read_text()



@pytest.mark.skipif(shutil.which("haproxy") is None, reason="needs haproxy (tools/platform packages)")
def test_every_answer_names_the_instance_that_gave_it_and_the_load_records_it(tmp_path):
    app = http_target.serve()
    port = free_port()
    balancer = Balancer(tmp_path)
    try:
        balancer.apply({"web": listener(f"127.0.0.1:{port}", {"i-0abc": "127.0.0.1"}, port=app.server_port)})
        assert f"http-response set-header {TARGET_HEADER} %s" in balancer.config.read_text()
        with Load(f"http://127.0.0.1:{port}/?fail_every=2", workers=1, pause=0.05) as load:
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and len(load.answered) < 10:
                time.sleep(0.1)
    finally:
        balancer.stop()
        app.shutdown()
    outcomes = {outcome for _, _, outcome in load.answered}
    assert {target for _, target, _ in load.answered} == {"i-0abc"}, load.answered
    assert outcomes == {http_target.VERSION, "HTTP 500"}, load.answered  # a 5xx answer names its target too
    assert load.failed == sum(1 for _, _, outcome in load.answered if outcome == "HTTP 500")


STAT = ("# pxname,svname,qcur,req_tot,hrsp_2xx,hrsp_5xx,status,\n"
        "web,FRONTEND,,100,98,2,OPEN,\n"
        "web,i-1,0,,,1,UP,\n"
        "web,i-2,0,,,0,DOWN 1/2,\n"
        "web,BACKEND,0,,,1,UP,\n"
        "second,FRONTEND,,40,40,0,OPEN,\n"
        "second,i-3,0,,,0,MAINT,\n"
        "second,BACKEND,0,,,0,DOWN,\n"
        "stats,FRONTEND,,7,7,0,OPEN,\n")


def test_read_all_counts_every_target_group(tmp_path):
    path = tmp_path / "haproxy.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(2)

    def answer():
        for _ in range(2):
            conn, _ = server.accept()
            with conn:
                conn.recv(100)
                conn.sendall(STAT.encode())

    thread = threading.Thread(target=answer)
    thread.start()
    try:
        # Servers UP and DOWN are the healthy and unhealthy hosts; one in maintenance is neither.
        assert lbmetrics.read_all(path) == {
            "second": {"requests": 40, "frontend_5xx": 0, "target_5xx": 0, "healthy": 0, "unhealthy": 0},
            "web": {"requests": 100, "frontend_5xx": 2, "target_5xx": 1, "healthy": 1, "unhealthy": 1}}
        assert lbmetrics.read_counters(path) == {"requests": 100, "frontend_5xx": 2, "target_5xx": 1,
                                                 "healthy": 1, "unhealthy": 1}
    finally:
        thread.join(5)
        server.close()


@pytest.mark.emulator
def test_publisher_per_target_group_and_load_balancer_totals(aws):
    clock = [2_000_000.0]
    cloudwatch = boto3.client("cloudwatch")
    pub = lbmetrics.Publisher(cloudwatch, LB, {"web": TG_WEB, "second": TG_SECOND}, period=5, now=lambda: clock[0])
    pub.sample({"web": {"requests": 10, "frontend_5xx": 0, "target_5xx": 0},
                "second": {"requests": 5, "frontend_5xx": 0, "target_5xx": 0}})
    pub.sample({"web": {"requests": 70, "frontend_5xx": 4, "target_5xx": 1},
                "second": {"requests": 25, "frontend_5xx": 1, "target_5xx": 1},
                "stats": {"requests": 99, "frontend_5xx": 0, "target_5xx": 0}})  # not a target group: ignored
    clock[0] += 5
    assert pub.flush() == {"requests": 80, "frontend_5xx": 5, "target_5xx": 2}

    start = datetime.fromtimestamp(2_000_000.0 - 60, tz=UTC)
    lb = [{"Name": "LoadBalancer", "Value": cloudwatch_dimension(LB)}]

    def query(qid, name, dims):
        return {"Id": qid, "MetricStat": {"Metric": {"Namespace": "AWS/ApplicationELB", "MetricName": name,
                                                     "Dimensions": dims}, "Period": 60, "Stat": "Sum"}}

    answer = cloudwatch.get_metric_data(MetricDataQueries=[
        query("web", "RequestCount", [{"Name": "TargetGroup", "Value": cloudwatch_dimension(TG_WEB)}, *lb]),
        query("second", "RequestCount", [{"Name": "TargetGroup", "Value": cloudwatch_dimension(TG_SECOND)}, *lb]),
        query("lb", "RequestCount", lb),
        query("t5xx", "HTTPCode_Target_5XX_Count",
              [{"Name": "TargetGroup", "Value": cloudwatch_dimension(TG_SECOND)}, *lb]),
        query("elb", "HTTPCode_ELB_5XX_Count", lb),
    ], StartTime=start, EndTime=start + timedelta(minutes=5))
    values = {r["Id"]: sum(r["Values"]) for r in answer["MetricDataResults"]}
    assert values == {"web": 60, "second": 20, "lb": 80, "t5xx": 1, "elb": 3}

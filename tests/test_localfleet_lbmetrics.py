"""The local balancer's numbers in the emulator's CloudWatch (stand-in for an ALB's metrics): counters,
host counts and response times (HAProxy's request log), and what CloudWatch answers from them."""

from __future__ import annotations

import shutil
import socket
import threading
import urllib.request
from collections import Counter
from datetime import UTC, datetime, timedelta

import boto3
import http_target
import pytest
from ansible_collections.ec2fleet.fleet.plugins.module_utils.deploy import DeployError, cloudwatch_dimension
from deploy_support import wait_for

from ec2fleet.emulator import free_port
from ec2fleet.localfleet import lbmetrics
from ec2fleet.localfleet.balancer import Balancer, listener

LB = "arn:aws:elasticloadbalancing:us-east-1:123456789012:loadbalancer/app/local-web/eb3e88bfa7a0f656"
TG = "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/local-web/54ff888949a76553"
# The first columns of HAProxy 2.6's `show stat` and the ones read; the rest cut for brevity.
STAT = ("# pxname,svname,qcur,req_tot,hrsp_2xx,hrsp_5xx,\n"
        "web,FRONTEND,,{req},{ok},{f5},\n"
        "web,i-1,0,,,{b5},\n"
        "web,BACKEND,0,,,{b5},\n")


def test_dimensions_from_arns():
    assert cloudwatch_dimension(LB) == "app/local-web/eb3e88bfa7a0f656"
    assert cloudwatch_dimension(TG) == "targetgroup/local-web/54ff888949a76553"
    with pytest.raises(DeployError, match="not a load balancer or target group ARN"):
        cloudwatch_dimension("arn:aws:ec2:us-east-1:1:instance/i-1")


def test_read_counters_from_the_stats_socket(tmp_path):
    path = tmp_path / "haproxy.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(1)

    def answer():
        conn, _ = server.accept()
        with conn:
            assert conn.recv(100) == b"show stat\n"
            conn.sendall(STAT.format(req=120, ok=110, f5=10, b5=4).encode())

    thread = threading.Thread(target=answer)
    thread.start()
    try:
        assert lbmetrics.read_counters(path) == {"requests": 120, "frontend_5xx": 10, "target_5xx": 4,
                                                 "healthy": 0, "unhealthy": 0}
    finally:
        thread.join(5)
        server.close()


@pytest.mark.emulator
def test_publisher_puts_window_increases_that_survive_a_reload(aws):
    clock = [1_000_000.0]
    cloudwatch = boto3.client("cloudwatch")
    pub = lbmetrics.Publisher(cloudwatch, LB, TG, period=5, now=lambda: clock[0])
    pub.sample({"requests": 100, "frontend_5xx": 2, "target_5xx": 1})
    pub.sample({"requests": 160, "frontend_5xx": 5, "target_5xx": 2})
    pub.sample({"requests": 30, "frontend_5xx": 0, "target_5xx": 0})  # a reload: the worker restarted
    clock[0] += 5
    assert pub.due()
    assert pub.flush() == {"requests": 90, "frontend_5xx": 3, "target_5xx": 1}
    assert not pub.due()

    start = datetime.fromtimestamp(1_000_000.0 - 60, tz=UTC)
    dims = [{"Name": "TargetGroup", "Value": cloudwatch_dimension(TG)},
            {"Name": "LoadBalancer", "Value": cloudwatch_dimension(LB)}]
    answer = cloudwatch.get_metric_data(
        MetricDataQueries=[
            {"Id": "req", "MetricStat": {"Metric": {"Namespace": "AWS/ApplicationELB", "MetricName": "RequestCount",
                                                    "Dimensions": dims}, "Period": 60, "Stat": "Sum"}},
            {"Id": "elb", "MetricStat": {"Metric": {"Namespace": "AWS/ApplicationELB",
                                                    "MetricName": "HTTPCode_ELB_5XX_Count",
                                                    "Dimensions": dims[1:]}, "Period": 60, "Stat": "Sum"}},
        ],
        StartTime=start, EndTime=start + timedelta(minutes=5))
    values = {r["Id"]: sum(r["Values"]) for r in answer["MetricDataResults"]}
    assert values == {"req": 90, "elb": 2}


def test_request_log_keeps_response_times_by_backend(tmp_path):
    log = lbmetrics.RequestLog(tmp_path / "requests.sock")
    try:
        sender = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        for line in (b"web i-1 200 12\n", b"web i-2 500 12\n", b"web i-1 200 480\n", b"second i-3 200 3\n",
                     b"web i-1 503 -1\n",  # no response from the server: no response time
                     b"garbage\n", b"web i-1 200 x\n"):
            sender.sendto(line, str(tmp_path / "requests.sock"))
        sender.close()
        wait_for(lambda: sum(sum(c.values()) for c in log.times.values()) >= 4, 5, step=0.05)
        assert log.drain() == {"web": Counter({12: 2, 480: 1}), "second": Counter({3: 1})}
        assert log.drain() == {}
    finally:
        log.close()
    assert not (tmp_path / "requests.sock").exists()


def query(qid, name, dims, stat, period=60):
    return {"Id": qid, "MetricStat": {"Metric": {"Namespace": "AWS/ApplicationELB", "MetricName": name,
                                                 "Dimensions": dims}, "Period": period, "Stat": stat}}


@pytest.mark.emulator
def test_publisher_puts_response_time_distributions_and_host_counts(aws):
    clock = [1_000_002.0]
    cloudwatch = boto3.client("cloudwatch")
    pub = lbmetrics.Publisher(cloudwatch, LB, TG, period=5, now=lambda: clock[0])
    assert pub.window_start == 1_000_000.0  # windows start at multiples of the period
    counters = {"requests": 0, "frontend_5xx": 0, "target_5xx": 0}
    for healthy, unhealthy in ((3, 0), (3, 0), (2, 1), (2, 1)):
        pub.sample({**counters, "healthy": healthy, "unhealthy": unhealthy})
    # 200 distinct response times (two PutMetricData members: 150 values at most each), then one slow one.
    pub.record_times({"web": Counter({ms: 5 for ms in range(10, 210)})})
    pub.record_times({"web": Counter({2500: 1}), "other": Counter({1: 9})})  # not a target group: ignored
    clock[0] += 3
    pub.flush()

    dims = [{"Name": "TargetGroup", "Value": cloudwatch_dimension(TG)},
            {"Name": "LoadBalancer", "Value": cloudwatch_dimension(LB)}]
    start = datetime.fromtimestamp(1_000_000.0 - 60, tz=UTC)
    answer = cloudwatch.get_metric_data(MetricDataQueries=[
        query("count", "TargetResponseTime", dims, "SampleCount"),
        query("avg", "TargetResponseTime", dims, "Average"),
        query("p50", "TargetResponseTime", dims, "p50"),
        query("p99", "TargetResponseTime", dims, "p99"),
        query("max", "TargetResponseTime", dims, "Maximum"),
        query("lb", "TargetResponseTime", dims[1:], "SampleCount"),
        query("healthy_min", "HealthyHostCount", dims, "Minimum"),
        query("healthy_avg", "HealthyHostCount", dims, "Average"),
        query("unhealthy_max", "UnHealthyHostCount", dims, "Maximum"),
    ], StartTime=start, EndTime=start + timedelta(minutes=5))
    values = {r["Id"]: r["Values"] for r in answer["MetricDataResults"]}
    assert values["count"] == [1001] and values["lb"] == [1001]
    assert values["avg"] == [pytest.approx((sum(range(10, 210)) * 5 + 2500) / 1001 / 1000)]
    # Nearest rank of 1,001: the 501st (110 ms) and the 991st (208 ms); the slow one is the maximum.
    assert values["p50"] == [pytest.approx(0.110)] and values["p99"] == [pytest.approx(0.208)]
    assert values["max"] == [2.5]
    assert values["healthy_min"] == [2] and values["healthy_avg"] == [2.5] and values["unhealthy_max"] == [1]


@pytest.mark.skipif(shutil.which("haproxy") is None, reason="needs haproxy (tools/platform packages)")
@pytest.mark.parametrize("depth", [0, 3], ids=["state-dir", "state-dir-too-deep-for-a-socket-path"])
def test_haproxy_logs_each_request_with_its_response_time(tmp_path, depth):
    # A fresh clone in pytest's temporary tree has a state directory longer than a socket path
    # may be (HAProxy: 97 bytes): its sockets are then reached through a short link.
    state_dir = tmp_path.joinpath(*["a-directory-deep-in-a-checkout"] * depth)
    state_dir.mkdir(parents=True, exist_ok=True)
    assert (len(str(state_dir / "haproxy-requests.sock")) > 97) == bool(depth)
    app = http_target.serve()
    balancer = Balancer(state_dir)
    assert balancer.socket.resolve().parent == state_dir.resolve()
    log = lbmetrics.RequestLog(balancer.request_log)
    port = free_port()
    try:
        balancer.apply({"web": listener(f"127.0.0.1:{port}", {"i-1": "127.0.0.1"}, app.server_address[1])})

        def healthy():
            try:
                return lbmetrics.read_counters(balancer.socket)["healthy"] == 1
            except OSError:
                return False

        wait_for(healthy, 10, step=0.1)
        for ms in (0, 0, 300):
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/?ms={ms}", timeout=10) as answer:
                assert answer.status == 200
        wait_for(lambda: sum(log.times.get("web", Counter()).values()) >= 3, 10, step=0.05)
        times = sorted(log.drain()["web"].elements())
        assert len(times) == 3 and times[1] < 100 and 300 <= times[2] < 2000
        assert lbmetrics.read_counters(balancer.socket) == {"requests": 3, "frontend_5xx": 0, "target_5xx": 0,
                                                            "healthy": 1, "unhealthy": 0}
    finally:
        log.close()
        balancer.stop()
        app.shutdown()
    assert balancer.sockets == state_dir if not depth else not balancer.sockets.is_symlink()  # link removed

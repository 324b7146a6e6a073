"""The local balancer's numbers in the emulator's CloudWatch (stand-in for an ALB's metrics)."""

from __future__ import annotations

import socket
import threading
from datetime import UTC, datetime, timedelta

import boto3
import pytest
from ansible_collections.ec2fleet.fleet.plugins.module_utils.deploy import DeployError, cloudwatch_dimension

from ec2fleet.localfleet import lbmetrics

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
        assert lbmetrics.read_counters(path) == {"requests": 120, "frontend_5xx": 10, "target_5xx": 4}
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

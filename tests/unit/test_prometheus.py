"""Server-side figures from the frontend's Prometheus text, and the saturation verdict."""

from __future__ import annotations

import pytest

from dynamo_bench.loadgen import prometheus
from dynamo_bench.loadgen.bench import SaturationPolicy

BEFORE = """# HELP dynamo_frontend_time_to_first_token_seconds TTFT
# TYPE dynamo_frontend_time_to_first_token_seconds histogram
dynamo_frontend_time_to_first_token_seconds_bucket{model="m",le="0.1"} 3
dynamo_frontend_time_to_first_token_seconds_sum{model="m"} 0.09
dynamo_frontend_time_to_first_token_seconds_count{model="m"} 3
dynamo_frontend_inter_token_latency_seconds_sum{model="m"} 0.5
dynamo_frontend_inter_token_latency_seconds_count{model="m"} 100
dynamo_frontend_requests_total{endpoint="chat_completions",status="success"} 3
dynamo_frontend_requests_total{endpoint="completions",status="success"} 1
"""
AFTER = BEFORE.replace("_sum{model=\"m\"} 0.09", "_sum{model=\"m\"} 0.39").replace(
    "_count{model=\"m\"} 3", "_count{model=\"m\"} 13").replace(
    "seconds_sum{model=\"m\"} 0.5", "seconds_sum{model=\"m\"} 1.1").replace(
    "seconds_count{model=\"m\"} 100", "seconds_count{model=\"m\"} 200").replace(
    "status=\"success\"} 3", "status=\"success\"} 13")


def test_parse_sums_label_sets() -> None:
    parsed = prometheus.parse(BEFORE)
    assert parsed["dynamo_frontend_requests_total"] == 4
    assert parsed[prometheus.TTFT + "_count"] == 3


def test_means_over_the_interval() -> None:
    lat = prometheus.server_latency(prometheus.parse(BEFORE), prometheus.parse(AFTER))
    assert lat.ttft_ms_mean == pytest.approx(30.0)  # 0.3 s over 10 requests
    assert lat.itl_ms_mean == pytest.approx(6.0)    # 0.6 s over 100 tokens
    assert lat.roundtrip_ttft_ms_mean is None
    assert lat.requests == 10


def test_saturation_policy() -> None:
    policy = SaturationPolicy()
    server = prometheus.ServerLatency(ttft_ms_mean=50.0, itl_ms_mean=6.0,
                                      roundtrip_ttft_ms_mean=45.0, requests=10)
    assert policy.check(53.0, 6.05, server) == (False, None)
    saturated, why = policy.check(90.0, 6.05, server)
    assert saturated and "client TTFT mean 90.0 ms vs server 50.0 ms" in why
    saturated, why = policy.check(55.0, 7.5, server)
    assert saturated and "ITL" in why
    assert policy.check(90.0, 7.5, None) == (None, "no server-side metrics to compare with")

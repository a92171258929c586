"""Parsing AIPerf artifacts recorded from real runs (tests/fixtures/aiperf, see record_aiperf.py)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from dynamo_bench.loadgen.artifacts import ArtifactError, read_requests, summarize
from dynamo_bench.specs import parse_sla

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "aiperf"


def raw(name: str) -> dict:
    return json.loads((FIX / name / "profile_export_aiperf.json").read_text())


def test_clean_run() -> None:
    m, req = summarize(FIX / "ok", gpus=2, concurrency=4)
    summary = raw("ok")
    lines = (FIX / "ok" / "profile_export.jsonl").read_text().splitlines()
    warmup = sum('"benchmark_phase":"warmup"' in line for line in lines)
    assert warmup == 2 and len(lines) == 26
    assert len(req) == 24 == m.requests  # warm-up dropped
    assert m.errors == 0 and m.error_rate == 0 and m.complete
    # the steady-state window: after the first wave of 4 has finished, before the last start
    first_end = req.sort_values("start_ns").head(4)["end_ns"].max()
    inside = req[(req["start_ns"] >= first_end) & (req["end_ns"] <= req["start_ns"].max())]
    assert m.steady_state and m.window_requests == len(inside) and 8 <= len(inside) < 24
    assert m.ttft_ms_p90 == pytest.approx(np.percentile(inside["ttft_ms"], 90))
    assert m.itl_ms_p50 == pytest.approx(np.percentile(inside["itl_ms"], 50))
    assert m.e2e_ms_p99 == pytest.approx(np.percentile(inside["e2e_ms"], 99))
    assert m.ttft_ms_p95 is not None
    # throughput over the window agrees with AIPerf's whole-run figure within the drain's share
    assert m.output_tok_s == pytest.approx(summary["output_token_throughput"]["avg"], rel=0.25)
    assert m.output_tok_s_per_gpu == pytest.approx(m.output_tok_s / 2)
    assert m.osl_mean == 24 and req["osl"].eq(24).all()
    assert m.isl_mean == pytest.approx(inside["isl"].mean())
    # the per-request table agrees with AIPerf's own summary
    assert req["ttft_ms"].mean() == pytest.approx(summary["time_to_first_token"]["avg"])
    assert 0 <= m.prefix_cache_hit_rate <= 1


def test_run_with_errors() -> None:
    m, req = summarize(FIX / "errors", gpus=1)
    assert m.requests == 24 and m.errors == 5
    assert m.error_rate == pytest.approx(5 / 24)
    assert set(req["error"].dropna()) == {"RequestCancellationError"}
    assert req.loc[req["error"].notna(), "cancelled"].all()
    assert m.usable  # some requests succeeded and the client kept up


def test_cancelled_run_is_marked_incomplete() -> None:
    m, req = summarize(FIX / "cancelled", gpus=1)
    assert raw("cancelled")["was_cancelled"] is True
    assert not m.complete and not m.usable
    assert 0 < m.requests == len(req) < 400


def test_speedup_rescales_to_simulated_time() -> None:
    base, req1 = summarize(FIX / "ok", gpus=1)
    fast, req10 = summarize(FIX / "ok", gpus=1, speedup_ratio=10)
    assert fast.time_base == "simulated" and fast.speedup_ratio == 10
    assert fast.ttft_ms_p90 == pytest.approx(base.ttft_ms_p90 * 10)
    assert fast.itl_ms_mean == pytest.approx(base.itl_ms_mean * 10)
    assert fast.output_tok_s == pytest.approx(base.output_tok_s / 10)
    assert fast.duration_s == pytest.approx(base.duration_s * 10)
    assert req10["ttft_ms"].tolist() == pytest.approx((req1["ttft_ms"] * 10).tolist())


def test_goodput_counts_requests_meeting_every_latency_limit() -> None:
    m, req = summarize(FIX / "ok", gpus=1, concurrency=4)
    limit = float(req["ttft_ms"].median())
    g, _ = summarize(FIX / "ok", gpus=1, concurrency=4,
                     sla=parse_sla(f"ttft_ms.p90<={limit},itl_ms.p90<=1000"))
    first_end = req.sort_values("start_ns").head(4)["end_ns"].max()
    inside = req[(req["start_ns"] >= first_end) & (req["end_ns"] <= req["start_ns"].max())]
    meeting = int((inside["ttft_ms"] <= limit).sum())
    assert 0 < meeting < len(inside)
    assert g.goodput_request_s == pytest.approx(meeting / m.duration_s)
    assert g.goodput_request_s < m.request_s
    assert g.goodput_sla == f"ttft_ms.p90<={limit:g},itl_ms.p90<=1000"


def test_missing_artifacts(tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match="not found"):
        summarize(tmp_path)
    with pytest.raises(ArtifactError, match="not found"):
        read_requests(tmp_path)


def test_a_run_cut_short_is_read_from_its_records(tmp_path: Path) -> None:
    """AIPerf stopped mid-run (a stack process died): no summary, maybe a half-written line."""
    cut = tmp_path / "cut"
    cut.mkdir()
    lines = (FIX / "ok" / "profile_export.jsonl").read_text().splitlines()[:14]
    (cut / "profile_export.jsonl").write_text("\n".join(lines) + "\n" + lines[14 - 1][:40])
    with pytest.raises(ArtifactError):
        summarize(cut, concurrency=4)
    m, req = summarize(cut, concurrency=4, partial=True)
    assert len(req) == 12 == m.requests and not m.complete

"""`Metrics`: what one load point measured, whichever fidelity produced it. Units in names.

Latencies are in milliseconds, throughputs in tokens (or requests) per second, rates are
fractions in [0, 1]. A `Metrics` is flat so that a list of them is a table (`to_row()`).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict

METRICS_SCHEMA_VERSION = 2
STAT_NAMES = ("p50", "p90", "p95", "p99", "mean")


class Metrics(BaseModel):
    """One load point's results.

    `complete` is False when the run was cut short (its numbers may be incomplete).
    `client_saturated` is True when the load client (not the server) limited the measurement,
    None when it could not be checked (no server-side metrics). `overhead_ms` is the measured
    non-engine part of the mean TTFT in wall time (client TTFT minus the frontend's request-plane
    round trip to the worker: HTTP, tokenisation, routing). `time_base` is "simulated" when
    mocker latencies were rescaled by `speedup_ratio`; the rescaling multiplied that overhead by
    `speedup_ratio` too.

    Latencies and throughputs are those of the steady-state window (loadgen/steady.py):
    `window_requests` requests over `duration_s`; `steady_state` is False when the run was too
    short for a window and every request was used. `requests` and `errors` count the whole run.
    """

    model_config = ConfigDict(extra="forbid")

    schema_version: int = METRICS_SCHEMA_VERSION
    source: Literal["aiperf", "replay"] = "aiperf"
    concurrency: int | None = None
    request_rate: float | None = None
    gpus: int = 0

    ttft_ms_p50: float | None = None
    ttft_ms_p90: float | None = None
    ttft_ms_p95: float | None = None
    ttft_ms_p99: float | None = None
    ttft_ms_mean: float | None = None
    itl_ms_p50: float | None = None
    itl_ms_p90: float | None = None
    itl_ms_p95: float | None = None
    itl_ms_p99: float | None = None
    itl_ms_mean: float | None = None
    e2e_ms_p50: float | None = None
    e2e_ms_p90: float | None = None
    e2e_ms_p95: float | None = None
    e2e_ms_p99: float | None = None
    e2e_ms_mean: float | None = None

    output_tok_s: float | None = None
    input_tok_s: float | None = None
    total_tok_s: float | None = None
    output_tok_s_per_gpu: float | None = None
    output_tok_s_per_user: float | None = None
    request_s: float | None = None
    goodput_request_s: float | None = None
    goodput_sla: str | None = None

    complete: bool = True
    requests: int = 0
    errors: int = 0
    error_rate: float = 0.0
    isl_mean: float | None = None
    osl_mean: float | None = None
    prefix_cache_hit_rate: float | None = None
    duration_s: float | None = None
    window_requests: int | None = None
    steady_state: bool | None = None

    server_ttft_ms_mean: float | None = None
    server_itl_ms_mean: float | None = None
    client_saturated: bool | None = None
    saturation_reason: str | None = None

    speedup_ratio: float = 1.0
    time_base: Literal["wall", "simulated"] = "wall"
    overhead_ms: float | None = None

    def to_row(self) -> dict[str, object]:
        """A flat dict for a DataFrame / CSV row."""
        return self.model_dump()

    @property
    def usable(self) -> bool:
        """False when the run must not be used as a result (client saturated, or all failed)."""
        return (self.client_saturated is not True and self.complete
                and self.requests > self.errors)

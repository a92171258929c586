"""The frontend's Prometheus `/metrics`: scrape, diff two scrapes, server-side latency means.

Dynamo's frontend exports TTFT and ITL histograms (seconds) and request-plane round-trip TTFT.
Their `_sum` / `_count` deltas over a run give server-side means, which a saturated load client
cannot distort; that is what the saturation check compares the client's figures with.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import httpx

_LINE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+([-+0-9.eEinfaINFA]+)")

TTFT = "dynamo_frontend_time_to_first_token_seconds"
ITL = "dynamo_frontend_inter_token_latency_seconds"
ROUNDTRIP_TTFT = "dynamo_request_plane_roundtrip_ttft_seconds"
REQUESTS = "dynamo_frontend_requests_total"


def parse(text: str) -> dict[str, float]:
    """Prometheus text format -> {metric name: value summed over label sets}."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = _LINE.match(line)
        if m:
            try:
                out[m.group(1)] = out.get(m.group(1), 0.0) + float(m.group(3))
            except ValueError:
                continue
    return out


def scrape(url: str, timeout_s: float = 5.0) -> dict[str, float] | None:
    """Summed samples from `url`, or None when it cannot be read (not a Dynamo frontend)."""
    try:
        r = httpx.get(url, timeout=timeout_s)
    except httpx.HTTPError:
        return None
    if r.status_code != 200:
        return None
    return parse(r.text)


@dataclass(frozen=True)
class ServerLatency:
    """Server-side means over the interval between two scrapes (ms; None without samples)."""

    ttft_ms_mean: float | None
    itl_ms_mean: float | None
    roundtrip_ttft_ms_mean: float | None
    requests: float


def _mean_ms(before: dict[str, float], after: dict[str, float], base: str) -> float | None:
    n = after.get(f"{base}_count", 0.0) - before.get(f"{base}_count", 0.0)
    total = after.get(f"{base}_sum", 0.0) - before.get(f"{base}_sum", 0.0)
    return 1000.0 * total / n if n > 0 else None


def server_latency(before: dict[str, float], after: dict[str, float]) -> ServerLatency:
    """Means of the frontend's TTFT, ITL and request-plane round-trip TTFT between scrapes."""
    return ServerLatency(
        _mean_ms(before, after, TTFT), _mean_ms(before, after, ITL),
        _mean_ms(before, after, ROUNDTRIP_TTFT),
        after.get(REQUESTS, 0.0) - before.get(REQUESTS, 0.0))

"""`WorkloadSpec`: what traffic to send. Pure data and validation.

Synthetic traffic (input/output lengths, shared prefixes, multi-turn sessions, images) or a trace
file in one of AIPerf's formats, at a load given as concurrency (closed loop) or request rate
(open loop, with an arrival pattern), for a request count or a duration.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from dynamo_bench.specs.base import Strict, field_error

#: The most requests (or warm-up requests) one load point may ask for: AIPerf allocates per
#: request up front and hangs on absurd counts.
MAX_REQUESTS = 10_000_000

TraceFormat = Literal["mooncake_trace", "single_turn", "multi_turn", "random_pool",
                      "bailian_trace"]


class LengthSpec(Strict):
    """A token length drawn from a normal distribution (stddev 0: fixed)."""

    mean: int = Field(ge=1, description="tokens")
    stddev: float = Field(0, ge=0, description="tokens")


class PrefixSpec(Strict):
    """Shared prefixes: each request starts with one of `pool_size` prefixes of `length` tokens,
    added on top of the input length (AIPerf's prefix prompt pool)."""

    pool_size: int = Field(ge=1)
    length: int = Field(ge=1, description="tokens")


class MultiTurnSpec(Strict):
    """Multi-turn sessions: each turn resends the growing conversation (agentic / chat shapes)."""

    turns_mean: float = Field(ge=1)
    turns_stddev: float = Field(0, ge=0)
    delay_ms_mean: float = Field(0, ge=0, description="user think time between turns")
    sessions: int | None = Field(None, ge=1, description="distinct conversations")


class ImageSpec(Strict):
    """Synthetic images in each chat request (vision-language models)."""

    per_request: int = Field(1, ge=1)
    width: int = Field(ge=1, description="pixels (mean)")
    height: int = Field(ge=1, description="pixels (mean)")
    format: Literal["png", "jpeg", "random"] = "png"


class TraceSpec(Strict):
    """Requests read from a file in one of AIPerf's custom dataset formats."""

    path: str = Field(min_length=1)
    format: TraceFormat = "mooncake_trace"
    fixed_schedule: bool | None = Field(None, description=(
        "replay the trace's timestamps (true), ignore them and run at the workload's load "
        "(false); unset: replay them when the trace has them (AIPerf's own default)"))
    block_size: int | None = Field(None, ge=1, description=(
        "tokens per `hash_ids` entry (unset: AIPerf's default for the format, 512 for "
        "mooncake_trace, 16 for bailian_trace; Dynamo's replay traces use 16)"))


class WorkloadSpec(Strict):
    """Traffic for one benchmark. Load is `concurrency` or `request_rate` (or both: a rate with a
    cap on requests in flight); the length is `request_count` or `duration_s`, and when neither
    is given, `request_count` defaults to max(40, 10 x concurrency) or 20 s worth of requests.

    `connection_reuse` defaults to "never" (a fresh connection per request): against Dynamo's
    frontend a reused keep-alive connection adds a stall of 20-40 ms to the first token at low
    load on this machine (client-side; the frontend's own TTFT does not show it), which would
    distort every TTFT figure and the saturation check. Set "pooled" to measure what a
    keep-alive client sees.

    Results come from the steady-state window (loadgen/steady.py): the first wave and the drain
    are left out, and under a concurrency the first requests start spread over `ramp_s`.
    """

    name: str = "workload"
    endpoint: Literal["chat", "completions"] = "chat"
    streaming: bool = True
    isl: LengthSpec | None = Field(None, description="input length (synthetic)")
    osl: LengthSpec | None = Field(None, description="output length (synthetic)")
    prefix: PrefixSpec | None = None
    shared_system_prompt_length: int | None = Field(None, ge=1, description="tokens")
    multi_turn: MultiTurnSpec | None = None
    images: ImageSpec | None = None
    trace: TraceSpec | None = None
    concurrency: int | None = Field(None, ge=1)
    request_rate: float | None = Field(None, gt=0, description="requests/s")
    arrival: Literal["poisson", "constant", "gamma"] = "poisson"
    burstiness: float | None = Field(None, gt=0, description="gamma arrivals: smoothness")
    request_count: int | None = Field(None, ge=1)
    duration_s: float | None = Field(None, gt=0)
    warmup_requests: int = Field(0, ge=0)
    ramp_s: float | None = Field(None, ge=0, description=(
        "closed loop: spread the starts of the first `concurrency` requests over this many "
        "seconds (AIPerf's concurrency ramp) instead of one burst; None: about one request's "
        "predicted duration; 0: all at once"))
    seed: int = 0
    ignore_eos: bool = Field(True, description="hold the output length (ignore_eos)")
    connection_reuse: Literal["never", "pooled", "sticky-user-sessions"] = Field(
        "never", description="HTTP connections: a new one per request (default), or reused")
    request_timeout_s: float = Field(600, gt=0)

    @model_validator(mode="after")
    def _check(self) -> WorkloadSpec:
        if self.concurrency is None and self.request_rate is None:
            raise field_error("concurrency", "the load is missing: set concurrency (closed loop) "
                              "or request_rate (open loop)")
        if self.trace is None:
            for name in ("isl", "osl"):
                if getattr(self, name) is None:
                    raise field_error(name, "is required for synthetic traffic (e.g. "
                                      f"{name}: {{mean: 512}}), or give a trace")
        else:
            for name in ("isl", "prefix", "shared_system_prompt_length", "multi_turn"):
                if getattr(self, name) is not None:
                    raise field_error(name, "cannot be combined with a trace (the trace "
                                      "defines the requests)")
        if self.images is not None and self.endpoint != "chat":
            raise field_error("images", "need endpoint: chat")
        if self.burstiness is not None and self.arrival != "gamma":
            raise field_error("burstiness", "only applies to arrival: gamma")
        for name in ("request_count", "warmup_requests"):
            value = getattr(self, name)
            if value is not None and value > MAX_REQUESTS:
                raise field_error(name, f"{value} is more than one load point can send (at "
                                  f"most {MAX_REQUESTS:,}): use a smaller count or duration_s")
        if self.trace is not None and self.trace.fixed_schedule and \
                self.request_rate is not None:
            raise field_error("request_rate", "cannot be combined with trace.fixed_schedule "
                              "(the trace's timestamps set the arrivals): drop one of them")
        if self.request_count is not None and self.duration_s is not None:
            raise field_error("duration_s", "give request_count or duration_s, not both")
        return self

    def at(self, concurrency: int | None = None, request_rate: float | None = None
           ) -> WorkloadSpec:
        """This workload at another load point (the other load setting is dropped)."""
        return self.model_copy(update={"concurrency": concurrency,
                                       "request_rate": request_rate})

    @property
    def shared_prefix_tokens(self) -> int:
        """Tokens every request starts with that other requests share (a pooled prefix or a
        system prompt); 0 without either."""
        return (self.prefix.length if self.prefix else 0) + (self.shared_system_prompt_length or 0)

    @property
    def prompt_tokens(self) -> float | None:
        """A synthetic request's mean prompt length: its input plus the shared prefix (None for
        a trace)."""
        return None if self.isl is None else self.isl.mean + self.shared_prefix_tokens

    @property
    def effective_request_count(self) -> int | None:
        """The request count a run uses (None when it runs for `duration_s`)."""
        if self.duration_s is not None:
            return None
        if self.request_count is not None:
            return self.request_count
        if self.concurrency is not None:
            return max(40, 10 * self.concurrency)
        assert self.request_rate is not None
        return max(40, int(self.request_rate * 20))

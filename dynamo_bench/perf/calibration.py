"""The roofline's fitted constants: a versioned data file, read once.

`perf/data/calibration.json` holds, per GPU generation, precision and engine, the achieved
fractions of peak and the fixed costs the roofline formulas need (`Efficiency`). It is written by
the fit (`python -m dynamo_bench.perf.calibrate`), never edited by hand, and carries its own
version, which is part of every cached table's key: a new fit recomputes the tables.

Lookup falls back from the most specific entry to the least: (generation, precision, engine),
then the same generation and engine at bf16, then the generation's vLLM entry, then the
Hopper vLLM entry (each lookup says which entry answered, for the tables' provenance).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from functools import lru_cache
from pathlib import Path
from typing import Any

DATA = Path(__file__).with_name("data") / "calibration.json"
SCHEMA_VERSION = 1
ENGINES = ("vllm", "sglang", "trtllm")


@dataclass(frozen=True)
class Efficiency:
    """Achieved fractions of peak and fixed costs of one engine on one GPU generation.

    Attributes:
        compute: fraction of dense tensor FLOP/s reached by large GEMMs and attention.
        memory: fraction of memory bandwidth reached when streaming weights and KV.
        prefill_layer_us: fixed cost per layer of a prefill step (kernel launches, norms,
            rotary, small kernels the roofline does not count), microseconds.
        decode_layer_us: the same per layer of a decode step (CUDA graphs make it smaller).
        step_ms: fixed cost per engine step (scheduling, sampling, host work), ms.
        request_ms: fixed cost a request adds to its first token (admission, detokenizing,
            streaming the first chunk), ms.
        allreduce_us: latency of one tensor-parallel all-reduce, microseconds.
        attention: fraction of peak reached by attention kernels: of the FLOP/s in prefill
            (score and value products), of the memory bandwidth when decode reads the KV cache.
        link: fraction of the interconnect bandwidth an all-reduce reaches.
        moe: what MoE expert kernels (grouped GEMMs, expert weight streaming) reach relative to
            dense ones (1: as fast).
    """

    compute: float
    memory: float
    prefill_layer_us: float
    decode_layer_us: float
    step_ms: float
    request_ms: float
    allreduce_us: float
    attention: float = 0.7
    link: float = 0.7
    moe: float = 0.7

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Efficiency:
        return cls(**{f.name: float(d[f.name]) for f in fields(cls) if f.name in d})

    def to_dict(self) -> dict[str, float]:
        return {k: round(v, 6) for k, v in asdict(self).items()}


#: Where no fit exists: first-order figures (50-60% of dense peak in large GEMMs, 75-85% of
#: memory bandwidth in decode, a few hundred microseconds of host work per step).
PRIOR = Efficiency(compute=0.55, memory=0.80, prefill_layer_us=20.0, decode_layer_us=8.0,
                   step_ms=0.5, request_ms=2.0, allreduce_us=12.0)


@dataclass(frozen=True)
class Calibration:
    """The fitted constants and where they came from."""

    version: str
    entries: dict[str, Efficiency]
    fitted_on: dict[str, Any]

    def lookup(self, generation: str, precision: str, engine: str) -> tuple[str, Efficiency]:
        """(the key that answered, its constants) for one worker; see the module docstring."""
        engine = "vllm" if engine == "mocker" else engine
        for key in (f"{generation}/{precision}/{engine}", f"{generation}/bf16/{engine}",
                    f"{generation}/{precision}/vllm", f"{generation}/bf16/vllm",
                    f"hopper/{precision}/{engine}", "hopper/bf16/vllm"):
            if key in self.entries:
                return key, self.entries[key]
        return "prior", PRIOR

    def to_json(self) -> str:
        return json.dumps({"schema_version": SCHEMA_VERSION, "version": self.version,
                           "fitted_on": self.fitted_on,
                           "entries": {k: v.to_dict() for k, v in sorted(self.entries.items())}},
                          indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str) -> Calibration:
        raw = json.loads(text)
        if raw.get("schema_version") != SCHEMA_VERSION:
            raise ValueError(f"calibration schema {raw.get('schema_version')} is not "
                             f"{SCHEMA_VERSION}")
        return cls(str(raw["version"]),
                   {k: Efficiency.from_dict(v) for k, v in raw["entries"].items()},
                   raw.get("fitted_on", {}))


@lru_cache(maxsize=None)
def calibration(path: Path = DATA) -> Calibration:
    """The shipped calibration (or the prior alone when the file is missing)."""
    if not path.is_file():
        return Calibration("prior", {}, {})
    return Calibration.from_json(path.read_text())

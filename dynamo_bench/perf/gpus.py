"""A catalogue of data-centre GPUs with their published figures.

Figures are the vendors' datasheet numbers for the SXM/OAM parts unless the name says otherwise:
memory (GB, 10^9 bytes), memory bandwidth (TB/s), dense (no sparsity) tensor throughput in
TFLOP/s for bf16 and fp8, and the per-GPU interconnect bandwidth (NVLink, or PCIe where a part
has no NVLink) in GB/s, one direction summed over links as the datasheets state it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class GPU:
    """One GPU type. `fp8_tflops` is None where the part has no fp8 tensor cores."""

    name: str
    memory_gb: float
    bandwidth_tb_s: float
    bf16_tflops: float
    fp8_tflops: float | None
    interconnect_gb_s: float
    interconnect: str


GPUS: dict[str, GPU] = {
    g.name: g
    for g in (
        GPU("h100_sxm", 80, 3.35, 989, 1979, 900, "NVLink 4"),
        GPU("h200_sxm", 141, 4.8, 989, 1979, 900, "NVLink 4"),
        GPU("b200", 180, 8.0, 2250, 4500, 1800, "NVLink 5"),
        GPU("gb200", 186, 8.0, 2500, 5000, 1800, "NVLink 5"),
        GPU("a100_80gb", 80, 2.039, 312, None, 600, "NVLink 3"),
        GPU("l40s", 48, 0.864, 362, 733, 64, "PCIe 4.0 x16"),
    )
}


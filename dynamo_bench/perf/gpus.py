"""A catalogue of data-centre GPUs with their published figures.

Figures are the vendors' datasheet numbers for the SXM/OAM parts unless the name says otherwise:
memory bandwidth (TB/s), dense (no sparsity) tensor throughput in TFLOP/s for bf16 and fp8, and
the per-GPU interconnect bandwidth (NVLink, or PCIe where a part has no NVLink) in GB/s, one
direction summed over links as the datasheets state it.

Memory is the total the driver reports (`nvidia-smi`, MiB = 2^20 bytes), which is what an
engine's `gpu_memory_utilization` is a fraction of. Datasheets say "80 GB" for the H100 and
"141 GB" for the H200, but those are binary gigabytes: 81,559 MiB (79.6 GiB) and 143,771 MiB
(140.4 GiB); reading them as 10^9 bytes loses 7% of the memory and, for a model that only just
fits, all of its KV cache.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class GPU:
    """One GPU type. `fp8_tflops` is None where the part has no fp8 tensor cores; `generation`
    (ampere, ada, hopper, blackwell) selects the roofline's fitted constants."""

    name: str
    memory_mib: int
    bandwidth_tb_s: float
    bf16_tflops: float
    fp8_tflops: float | None
    interconnect_gb_s: float
    interconnect: str
    generation: str

    @property
    def memory_bytes(self) -> int:
        return self.memory_mib * 2**20

    @property
    def memory_gib(self) -> float:
        return self.memory_mib / 1024


GPUS: dict[str, GPU] = {
    g.name: g
    for g in (
        GPU("h100_sxm", 81_559, 3.35, 989, 1979, 900, "NVLink 4", "hopper"),
        GPU("h200_sxm", 143_771, 4.8, 989, 1979, 900, "NVLink 4", "hopper"),
        GPU("b200", 183_359, 8.0, 2250, 4500, 1800, "NVLink 5", "blackwell"),
        GPU("gb200", 189_471, 8.0, 2500, 5000, 1800, "NVLink 5", "blackwell"),
        GPU("a100_80gb", 81_920, 2.039, 312, None, 600, "NVLink 3", "ampere"),
        GPU("l40s", 46_068, 0.864, 362, 733, 32, "PCIe 4.0 x16", "ada"),
    )
}


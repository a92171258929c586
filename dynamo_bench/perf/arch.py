"""Model architecture read from a Hugging Face `config.json`: shapes, parameter counts, KV size.

Dense and mixture-of-experts decoders (Llama, Qwen2/3, Qwen3-MoE, Mixtral, Mistral): the numbers
the performance model needs, nothing else.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dynamo_bench.errors import SpecError

_DTYPE_BYTES = {"bfloat16": 2, "float16": 2, "float32": 4, "fp8": 1, "float8_e4m3fn": 1}


@dataclass(frozen=True)
class ModelArch:
    """A decoder-only transformer's shape.

    MoE fields are zero for dense models. `moe_intermediate` is one expert's FFN width.
    """

    name: str
    layers: int
    hidden: int
    heads: int
    kv_heads: int
    head_dim: int
    intermediate: int
    vocab: int
    experts: int = 0
    experts_per_token: int = 0
    moe_intermediate: int = 0
    tie_embeddings: bool = False
    dtype_bytes: int = 2

    @property
    def is_moe(self) -> bool:
        return self.experts > 0

    @classmethod
    def from_config(cls, config: dict[str, Any], name: str = "model") -> ModelArch:
        """Read the fields that matter from a `config.json` mapping."""
        try:
            hidden = int(config["hidden_size"])
            heads = int(config["num_attention_heads"])
            experts = int(config.get("num_experts") or config.get("num_local_experts") or 0)
            moe_inter = int(config.get("moe_intermediate_size") or
                            (config["intermediate_size"] if experts else 0))
            return cls(
                name=name,
                layers=int(config["num_hidden_layers"]),
                hidden=hidden,
                heads=heads,
                kv_heads=int(config.get("num_key_value_heads") or heads),
                head_dim=int(config.get("head_dim") or hidden // heads),
                intermediate=int(config["intermediate_size"]),
                vocab=int(config["vocab_size"]),
                experts=experts,
                experts_per_token=int(config.get("num_experts_per_tok") or 0),
                moe_intermediate=moe_inter,
                tie_embeddings=bool(config.get("tie_word_embeddings", False)),
                dtype_bytes=_DTYPE_BYTES.get(str(config.get("torch_dtype", "bfloat16")), 2),
            )
        except KeyError as e:
            raise SpecError("model", f"config.json lacks {e.args[0]!r} (not a decoder-only "
                            "transformer config?)") from None

    @classmethod
    def from_dir(cls, path: str | Path) -> ModelArch:
        p = Path(path)
        try:
            config = json.loads((p / "config.json").read_text())
        except (OSError, ValueError) as e:
            raise SpecError("model", f"cannot read {p / 'config.json'}: {e}") from None
        name = p.name
        marker = p / "dynamo_bench_model.json"  # directories built by `dynamo-bench model make`
        if marker.exists():
            name = json.loads(marker.read_text()).get("catalogue_name", name)
        return cls.from_config(config, name=name)

    # -- parameter counts ---------------------------------------------------------------------

    @property
    def attn_params_per_layer(self) -> int:
        """Q, K, V and output projections."""
        q = self.hidden * self.heads * self.head_dim
        kv = 2 * self.hidden * self.kv_heads * self.head_dim
        o = self.heads * self.head_dim * self.hidden
        return q + kv + o

    @property
    def ffn_params_per_layer(self) -> int:
        """All FFN weights of a layer (every expert of an MoE layer, plus its router)."""
        if self.is_moe:
            return self.experts * 3 * self.hidden * self.moe_intermediate \
                + self.hidden * self.experts
        return 3 * self.hidden * self.intermediate  # gated MLP: gate, up, down

    @property
    def active_ffn_params_per_layer(self) -> int:
        """FFN weights one token uses (its top-k experts for MoE)."""
        if self.is_moe:
            return self.experts_per_token * 3 * self.hidden * self.moe_intermediate \
                + self.hidden * self.experts
        return self.ffn_params_per_layer

    @property
    def embedding_params(self) -> int:
        return self.vocab * self.hidden * (1 if self.tie_embeddings else 2)

    @property
    def params(self) -> int:
        """Total parameters."""
        return self.layers * (self.attn_params_per_layer + self.ffn_params_per_layer) \
            + self.embedding_params

    @property
    def active_params(self) -> int:
        """Parameters used per token (equals `params` for dense models)."""
        return self.layers * (self.attn_params_per_layer + self.active_ffn_params_per_layer) \
            + self.embedding_params

    def kv_bytes_per_token(self, kv_dtype_bytes: int | None = None) -> int:
        """KV cache bytes one token occupies across all layers (K and V, all KV heads)."""
        b = self.dtype_bytes if kv_dtype_bytes is None else kv_dtype_bytes
        return 2 * self.layers * self.kv_heads * self.head_dim * b

"""Model architecture read from a Hugging Face `config.json`: shapes, parameter counts, KV size.

Dense and mixture-of-experts decoders (Llama, Qwen2/3, Qwen3-MoE, Mixtral, Mistral): the numbers
the performance model needs, nothing else. A config that describes something these formulas do
not model (latent attention, shared experts, dense-then-MoE layer mixes, sliding-window or linear
attention) is refused with an error naming what is missing, never read as a smaller dense model.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dynamo_bench.errors import SpecError

_DTYPE_BYTES = {"bfloat16": 2, "float16": 2, "float32": 4, "fp8": 1, "float8_e4m3fn": 1}

#: `model_type` values whose configs the formulas read completely.
SUPPORTED_MODEL_TYPES = ("llama", "mistral", "qwen2", "qwen3", "qwen3_moe", "mixtral")

#: Config keys that mean a feature the formulas do not model, with what it is.
_UNSUPPORTED_KEYS = {
    "kv_lora_rank": "multi-head latent attention (MLA)",
    "q_lora_rank": "multi-head latent attention (MLA)",
    "n_routed_experts": "routed experts under DeepSeek's field names",
    "n_shared_experts": "shared experts",
    "shared_expert_intermediate_size": "shared experts",
    "first_k_dense_replace": "dense layers before the MoE layers",
    "moe_layer_freq": "MoE on only some layers",
    "linear_attn_config": "linear attention",
    "layer_types": "per-layer attention types (sliding-window or linear layers)",
    "attn_layer_period": "hybrid attention/state-space layers",
    "ssm_cfg": "state-space layers",
}


def unsupported_features(config: dict[str, Any]) -> list[str]:
    """What `config` describes that the performance model would silently ignore ([] if none),
    each as "what (config keys)"."""
    found: dict[str, list[str]] = {}
    for key, what in _UNSUPPORTED_KEYS.items():
        value = config.get(key)
        if value in (None, 0, [], {}, False):
            continue
        if key == "layer_types" and all(t == "full_attention" for t in value):
            continue
        found.setdefault(what, []).append(key)
    window = config.get("sliding_window")
    if config.get("use_sliding_window") or (
            window and config.get("model_type") in ("mistral", "mixtral")
            and window < config.get("max_position_embeddings", 0)):
        found.setdefault("sliding-window attention", []).append("sliding_window")
    if config.get("mlp_only_layers"):
        found.setdefault("dense layers among the MoE layers", []).append("mlp_only_layers")
    if int(config.get("decoder_sparse_step") or 1) != 1:
        found.setdefault("MoE on only some layers", []).append("decoder_sparse_step")
    out = [f"{what} ({', '.join(keys)})" for what, keys in found.items()]
    model_type = config.get("model_type")
    if model_type is not None and model_type not in SUPPORTED_MODEL_TYPES and not out:
        out.append(f"model_type {model_type!r}")
    return out


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
        """Read the fields that matter from a `config.json` mapping.

        Raises:
            SpecError: the config lacks a field, or describes an architecture the formulas do
                not model (`unsupported_features`).
        """
        if "text_config" in config and "hidden_size" not in config:
            raise SpecError("model", f"{name}: config.json nests a language model in "
                            "text_config (a multimodal model), which the performance model does "
                            "not read yet; give the language model's own config")
        missing = unsupported_features(config)
        if missing:
            raise SpecError("model", f"{name}: the performance model does not support this "
                            f"architecture: it has {', '.join(missing)}; supported are dense and "
                            f"MoE decoders with standard attention (model_type "
                            f"{', '.join(SUPPORTED_MODEL_TYPES)})")
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
    def of(cls, model: str) -> ModelArch:
        """The architecture of a catalogue name (case-insensitive, or its HF id) or of a model
        directory, from its config alone (no tokenizer or model directory is built)."""
        from dynamo_bench.perf.models import catalogue_model

        if Path(model).expanduser().is_dir():
            return cls.from_dir(Path(model).expanduser())
        entry = catalogue_model(model)
        if entry is None:
            raise SpecError("model", f"{model!r} is neither a model directory nor a catalogue "
                            "model (dynamo-bench model list)")
        return cls.from_config(entry.config, entry.name)

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

    def parallel_problem(self, tp: int, pp: int = 1) -> str | None:
        """Why the engines cannot split this model `tp` x `pp` ways, or None if they can.

        Tensor parallelism splits the attention heads (and shares or splits the KV heads)
        evenly; pipeline parallelism needs at least one layer per stage.
        """
        if self.heads % tp:
            divisors = [d for d in (1, 2, 4, 8, 16, 32, 64) if self.heads % d == 0]
            return (f"tp {tp} does not divide the {self.heads} attention heads of {self.name} "
                    f"(use {', '.join(map(str, divisors))})")
        if tp > self.kv_heads and tp % self.kv_heads or tp <= self.kv_heads and self.kv_heads % tp:
            return (f"tp {tp} cannot share or split the {self.kv_heads} KV heads of {self.name} "
                    f"evenly")
        if pp > self.layers:
            return f"pp {pp} is more stages than the {self.layers} layers of {self.name}"
        return None

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

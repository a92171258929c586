"""A catalogue of real model architectures, as their Hugging Face `config.json` files state them.

No model hub is reachable from the machines this project runs on, so the values are kept here.
Each entry is the architecture part of the published config (layer counts, widths, heads, experts,
vocabulary, context length, dtype); weights are never needed: the mocker engine simulates them and
the performance model only needs the shapes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

ChatFamily = Literal["llama3", "chatml", "mistral"]

_LLAMA31_ROPE = {
    "factor": 8.0,
    "low_freq_factor": 1.0,
    "high_freq_factor": 4.0,
    "original_max_position_embeddings": 8192,
    "rope_type": "llama3",
}


@dataclass(frozen=True)
class CatalogueModel:
    """One catalogue entry.

    Attributes:
        name: short name used in specs and on the CLI (`Llama-3.1-8B`).
        hf_id: the Hugging Face repository the architecture comes from.
        chat_family: which chat template and special tokens its tokenizer uses.
        config: the `config.json` content (architecture values only).
        fp8_hf_id: a published fp8 checkpoint of the same model (weights already in fp8), which
            engines load for `precision: fp8`; None where there is none (vLLM and SGLang then
            quantize the bf16 weights at load time, TensorRT-LLM cannot).
    """

    name: str
    hf_id: str
    chat_family: ChatFamily
    config: dict[str, Any] = field(repr=False)
    fp8_hf_id: str | None = None

    def checkpoint(self, precision: str) -> str:
        """The Hugging Face id an engine loads at `precision` (the fp8 export where one is
        published)."""
        return self.fp8_hf_id if precision == "fp8" and self.fp8_hf_id else self.hf_id


def _llama31(hidden: int, inter: int, layers: int, heads: int) -> dict[str, Any]:
    return {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": hidden,
        "intermediate_size": inter,
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "num_key_value_heads": 8,
        "head_dim": hidden // heads,
        "hidden_act": "silu",
        "max_position_embeddings": 131072,
        "rms_norm_eps": 1e-5,
        "rope_theta": 500000.0,
        "rope_scaling": dict(_LLAMA31_ROPE),
        "vocab_size": 128256,
        "tie_word_embeddings": False,
        "attention_bias": False,
        "mlp_bias": False,
        "bos_token_id": 128000,
        "eos_token_id": [128001, 128008, 128009],
        "torch_dtype": "bfloat16",
    }


def _qwen3(hidden: int, inter: int, layers: int, heads: int, kv_heads: int,
           tie: bool, max_pos: int = 40960) -> dict[str, Any]:
    return {
        "architectures": ["Qwen3ForCausalLM"],
        "model_type": "qwen3",
        "hidden_size": hidden,
        "intermediate_size": inter,
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "num_key_value_heads": kv_heads,
        "head_dim": 128,
        "hidden_act": "silu",
        "max_position_embeddings": max_pos,
        "rms_norm_eps": 1e-6,
        "rope_theta": 1000000.0,
        "rope_scaling": None,
        "vocab_size": 151936,
        "tie_word_embeddings": tie,
        "attention_bias": False,
        "bos_token_id": 151643,
        "eos_token_id": 151645,
        "torch_dtype": "bfloat16",
    }


def _qwen3_moe(hidden: int, inter: int, moe_inter: int, layers: int, heads: int,
               kv_heads: int, experts: int, active: int) -> dict[str, Any]:
    cfg = _qwen3(hidden, inter, layers, heads, kv_heads, tie=False)
    cfg.update({
        "architectures": ["Qwen3MoeForCausalLM"],
        "model_type": "qwen3_moe",
        "moe_intermediate_size": moe_inter,
        "num_experts": experts,
        "num_experts_per_tok": active,
        "decoder_sparse_step": 1,
        "mlp_only_layers": [],
        "norm_topk_prob": True,
    })
    return cfg


def _qwen25(hidden: int, inter: int, layers: int, heads: int, kv_heads: int) -> dict[str, Any]:
    cfg = _qwen3(hidden, inter, layers, heads, kv_heads, tie=False, max_pos=32768)
    cfg.update({"architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2",
                "head_dim": hidden // heads, "attention_bias": True, "vocab_size": 152064,
                "eos_token_id": 151645})
    return cfg



def _llama2(hidden: int, inter: int, layers: int, heads: int, kv_heads: int) -> dict[str, Any]:
    cfg = {**_llama31(hidden, inter, layers, heads), "num_key_value_heads": kv_heads,
           "max_position_embeddings": 4096, "rope_theta": 10000.0, "rope_scaling": None,
           "rms_norm_eps": 1e-5, "vocab_size": 32000, "bos_token_id": 1, "eos_token_id": 2}
    return cfg


_MIXTRAL_8X7B: dict[str, Any] = {
    "architectures": ["MixtralForCausalLM"],
    "model_type": "mixtral",
    "hidden_size": 4096,
    "intermediate_size": 14336,
    "num_hidden_layers": 32,
    "num_attention_heads": 32,
    "num_key_value_heads": 8,
    "head_dim": 128,
    "hidden_act": "silu",
    "max_position_embeddings": 32768,
    "rms_norm_eps": 1e-5,
    "rope_theta": 1000000.0,
    "sliding_window": None,
    "num_local_experts": 8,
    "num_experts_per_tok": 2,
    "vocab_size": 32000,
    "tie_word_embeddings": False,
    "bos_token_id": 1,
    "eos_token_id": 2,
    "torch_dtype": "bfloat16",
}

CATALOGUE: dict[str, CatalogueModel] = {
    m.name: m
    for m in (
        CatalogueModel("Llama-3.1-8B", "meta-llama/Llama-3.1-8B-Instruct", "llama3",
                       _llama31(4096, 14336, 32, 32), "nvidia/Llama-3.1-8B-Instruct-FP8"),
        CatalogueModel("Llama-3.1-70B", "meta-llama/Llama-3.1-70B-Instruct", "llama3",
                       _llama31(8192, 28672, 80, 64), "nvidia/Llama-3.1-70B-Instruct-FP8"),
        CatalogueModel("Llama-3.1-405B", "meta-llama/Llama-3.1-405B-Instruct", "llama3",
                       _llama31(16384, 53248, 126, 128), "nvidia/Llama-3.1-405B-Instruct-FP8"),
        CatalogueModel("Llama-3.3-70B", "meta-llama/Llama-3.3-70B-Instruct", "llama3",
                       _llama31(8192, 28672, 80, 64), "nvidia/Llama-3.3-70B-Instruct-FP8"),
        CatalogueModel("Llama-2-7B", "meta-llama/Llama-2-7b-chat-hf", "mistral",
                       _llama2(4096, 11008, 32, 32, 32)),
        CatalogueModel("Llama-2-13B", "meta-llama/Llama-2-13b-chat-hf", "mistral",
                       _llama2(5120, 13824, 40, 40, 40)),
        CatalogueModel("Llama-2-70B", "meta-llama/Llama-2-70b-chat-hf", "mistral",
                       _llama2(8192, 28672, 80, 64, 8)),
        CatalogueModel("Qwen2.5-7B", "Qwen/Qwen2.5-7B-Instruct", "chatml",
                       _qwen25(3584, 18944, 28, 28, 4)),
        CatalogueModel("Qwen2.5-14B", "Qwen/Qwen2.5-14B-Instruct", "chatml",
                       _qwen25(5120, 13824, 48, 40, 8)),
        CatalogueModel("Qwen2.5-32B", "Qwen/Qwen2.5-32B-Instruct", "chatml",
                       _qwen25(5120, 27648, 64, 40, 8)),
        CatalogueModel("Qwen2.5-72B", "Qwen/Qwen2.5-72B-Instruct", "chatml",
                       _qwen25(8192, 29568, 80, 64, 8)),
        CatalogueModel("Qwen3-0.6B", "Qwen/Qwen3-0.6B", "chatml",
                       _qwen3(1024, 3072, 28, 16, 8, tie=True), "Qwen/Qwen3-0.6B-FP8"),
        CatalogueModel("Qwen3-8B", "Qwen/Qwen3-8B", "chatml",
                       _qwen3(4096, 12288, 36, 32, 8, tie=False), "Qwen/Qwen3-8B-FP8"),
        CatalogueModel("Qwen3-32B", "Qwen/Qwen3-32B", "chatml",
                       _qwen3(5120, 25600, 64, 64, 8, tie=False), "Qwen/Qwen3-32B-FP8"),
        CatalogueModel("Qwen3-30B-A3B", "Qwen/Qwen3-30B-A3B", "chatml",
                       _qwen3_moe(2048, 6144, 768, 48, 32, 4, 128, 8), "Qwen/Qwen3-30B-A3B-FP8"),
        CatalogueModel("Qwen3-235B-A22B", "Qwen/Qwen3-235B-A22B", "chatml",
                       _qwen3_moe(4096, 12288, 1536, 94, 64, 4, 128, 8),
                       "Qwen/Qwen3-235B-A22B-FP8"),
        CatalogueModel("Mixtral-8x7B", "mistralai/Mixtral-8x7B-Instruct-v0.1", "mistral",
                       _MIXTRAL_8X7B),
    )
}


def catalogue_model(name: str) -> CatalogueModel | None:
    """The catalogue entry for `name` (case-insensitive; the HF id works too), or None."""
    key = name.strip().lower()
    for model in CATALOGUE.values():
        if key in (model.name.lower(), model.hf_id.lower()):
            return model
    return None


def spelling_problem(name: str) -> str | None:
    """Why `name` is refused although it matches a catalogue entry ignoring case (a served
    model name and a Hugging Face id are case-sensitive), or None."""
    entry = catalogue_model(name)
    if entry is None or name in (entry.name, entry.hf_id):
        return None
    return (f"{name!r} is not spelled as in the catalogue: use {entry.name!r} "
            f"(or {entry.hf_id!r})")

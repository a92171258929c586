"""Tiny checkpoints of real architectures: random weights a real engine can load on a CPU.

`write_tiny_model` shrinks a catalogue model's `config.json` (2 layers, hidden 256, 4 heads, 2 KV
heads, the locally trained tokenizer's vocabulary) but keeps its architecture class and every
structural choice (norms, biases, tied embeddings), then writes random bf16 weights under the
tensor names Hugging Face uses for that architecture, as one `model.safetensors`. The tokenizer
and chat template are the catalogue directory's (serving/model_dir.py). `write_tiny_lora` writes
a matching PEFT LoRA adapter (random A, zero-free B, so it changes the output).

The safetensors file is written here (an 8-byte header length, a JSON header, raw little-endian
data): bf16 has no numpy dtype, and the format is simple enough not to need torch.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np

from dynamo_bench.errors import SpecError
from dynamo_bench.perf.models import CatalogueModel
from dynamo_bench.serving.model_dir import TOKENIZER_VOCAB, write_model_dir

#: Architectures whose weight names are written here (Hugging Face class names).
ARCHITECTURES = ("LlamaForCausalLM", "MistralForCausalLM", "Qwen2ForCausalLM",
                 "Qwen3ForCausalLM")
TINY = {"hidden_size": 256, "intermediate_size": 512, "num_hidden_layers": 2,
        "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 64,
        "max_position_embeddings": 4096}


def tiny_config(model: CatalogueModel) -> dict:
    """The catalogue model's config.json, shrunk; raises SpecError for an architecture whose
    weight names are not known here (MoE, multimodal)."""
    arch = (model.config.get("architectures") or ["?"])[0]
    if arch not in ARCHITECTURES:
        raise SpecError("model", f"--tiny supports {', '.join(ARCHITECTURES)}; {model.name} is "
                        f"{arch} (choose a dense Llama, Mistral or Qwen model)")
    config = dict(model.config)
    config.update(TINY, vocab_size=TOKENIZER_VOCAB, torch_dtype="bfloat16")
    config.pop("rope_scaling", None)  # scaled for 128k contexts; the tiny model serves 4k
    config.pop("sliding_window", None)
    config.pop("max_window_layers", None)
    config.pop("layer_types", None)
    return config


def _shapes(config: dict) -> dict[str, tuple[int, ...]]:
    h, inter = config["hidden_size"], config["intermediate_size"]
    heads, kv, hd = (config["num_attention_heads"], config["num_key_value_heads"],
                     config["head_dim"])
    arch = config["architectures"][0]
    out: dict[str, tuple[int, ...]] = {"model.embed_tokens.weight": (config["vocab_size"], h),
                                       "model.norm.weight": (h,)}
    for i in range(config["num_hidden_layers"]):
        p = f"model.layers.{i}."
        out.update({p + "self_attn.q_proj.weight": (heads * hd, h),
                    p + "self_attn.k_proj.weight": (kv * hd, h),
                    p + "self_attn.v_proj.weight": (kv * hd, h),
                    p + "self_attn.o_proj.weight": (h, heads * hd),
                    p + "mlp.gate_proj.weight": (inter, h),
                    p + "mlp.up_proj.weight": (inter, h),
                    p + "mlp.down_proj.weight": (h, inter),
                    p + "input_layernorm.weight": (h,),
                    p + "post_attention_layernorm.weight": (h,)})
        if arch == "Qwen2ForCausalLM":  # biased q/k/v projections
            out.update({p + "self_attn.q_proj.bias": (heads * hd,),
                        p + "self_attn.k_proj.bias": (kv * hd,),
                        p + "self_attn.v_proj.bias": (kv * hd,)})
        if arch == "Qwen3ForCausalLM":  # per-head RMS norms on q and k
            out.update({p + "self_attn.q_norm.weight": (hd,), p + "self_attn.k_norm.weight": (hd,)})
    if not config.get("tie_word_embeddings"):
        out["lm_head.weight"] = (config["vocab_size"], h)
    return out


def _bf16(x: np.ndarray) -> bytes:
    """float32 -> bf16 bytes (round to nearest even)."""
    bits = np.ascontiguousarray(x, dtype="<f4").view("<u4")
    rounded = (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16
    return rounded.astype("<u2").tobytes()


def write_safetensors(tensors: dict[str, np.ndarray], path: Path) -> None:
    """Write float32 arrays as one bf16 safetensors file."""
    header: dict[str, object] = {"__metadata__": {"format": "pt"}}
    blobs, offset = [], 0
    for name, array in tensors.items():
        data = _bf16(array)
        header[name] = {"dtype": "BF16", "shape": list(array.shape),
                        "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)  # the data starts 8-byte aligned
    with path.open("wb") as f:
        f.write(struct.pack("<Q", len(raw)))
        f.write(raw)
        for blob in blobs:
            f.write(blob)


def _random(shapes: dict[str, tuple[int, ...]], seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    out = {}
    for name, shape in shapes.items():
        if name.endswith("norm.weight"):
            out[name] = np.ones(shape, dtype=np.float32)
        elif name.endswith(".bias"):
            out[name] = np.zeros(shape, dtype=np.float32)
        else:
            out[name] = rng.normal(0.0, 0.02, shape).astype(np.float32)
    return out


def write_tiny_model(model: CatalogueModel, dest: Path, seed: int = 0) -> Path:
    """A servable tiny checkpoint of `model`'s architecture in `dest` (created if needed)."""
    config = tiny_config(model)
    write_model_dir(model, dest)  # tokenizer, chat template, generation config
    ids = json.loads((dest / "config.json").read_text())
    config.update(bos_token_id=ids["bos_token_id"], eos_token_id=ids["eos_token_id"],
                  _name_or_path=f"{model.hf_id} (tiny, random weights)")
    (dest / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    write_safetensors(_random(_shapes(config), seed), dest / "model.safetensors")
    note = json.loads((dest / "dynamo_bench_model.json").read_text())
    note.update(tiny=True, note="the architecture of the published config.json, shrunk to 2 "
                "layers and hidden 256; random bf16 weights; tokenizer trained locally")
    (dest / "dynamo_bench_model.json").write_text(json.dumps(note, indent=2) + "\n")
    return dest


def write_tiny_lora(model_dir: Path, dest: Path, rank: int = 8, seed: int = 1) -> Path:
    """A random PEFT LoRA adapter (q/k/v/o projections) for the tiny model in `model_dir`."""
    config = json.loads((model_dir / "config.json").read_text())
    shapes = _shapes(config)
    targets = ("q_proj", "k_proj", "v_proj", "o_proj")
    rng = np.random.default_rng(seed)
    tensors: dict[str, np.ndarray] = {}
    for name, shape in shapes.items():
        module = name.removesuffix(".weight")
        if not name.endswith(".weight") or module.rsplit(".", 1)[-1] not in targets:
            continue
        out_dim, in_dim = shape
        base = f"base_model.model.{module}"
        tensors[f"{base}.lora_A.weight"] = rng.normal(0, 0.02, (rank, in_dim)).astype(np.float32)
        tensors[f"{base}.lora_B.weight"] = rng.normal(0, 0.02, (out_dim, rank)).astype(np.float32)
    dest.mkdir(parents=True, exist_ok=True)
    write_safetensors(tensors, dest / "adapter_model.safetensors")
    (dest / "adapter_config.json").write_text(json.dumps({
        "peft_type": "LORA", "task_type": "CAUSAL_LM", "r": rank, "lora_alpha": 2 * rank,
        "lora_dropout": 0.0, "bias": "none", "target_modules": list(targets),
        "base_model_name_or_path": str(model_dir), "fan_in_fan_out": False,
        "inference_mode": True}, indent=2) + "\n")
    return dest

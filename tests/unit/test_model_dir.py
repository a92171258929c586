"""Model directories: real architecture values, a working tokenizer and chat template."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import jinja2
import pytest
from tokenizers import Tokenizer

from dynamo_bench.errors import SpecError
from dynamo_bench.perf.models import CATALOGUE, catalogue_model
from dynamo_bench.serving.model_dir import missing_files, resolve_model, write_model_dir

# Published values, checked by hand against the models' config.json files.
KNOWN = {
    "Llama-3.1-8B": dict(hidden_size=4096, num_hidden_layers=32, num_attention_heads=32,
                         num_key_value_heads=8, intermediate_size=14336, vocab_size=128256),
    "Llama-3.1-70B": dict(hidden_size=8192, num_hidden_layers=80, num_attention_heads=64,
                          num_key_value_heads=8, intermediate_size=28672, vocab_size=128256),
    "Qwen3-8B": dict(hidden_size=4096, num_hidden_layers=36, num_attention_heads=32,
                     num_key_value_heads=8, intermediate_size=12288, head_dim=128),
    "Qwen3-32B": dict(hidden_size=5120, num_hidden_layers=64, num_attention_heads=64,
                      num_key_value_heads=8, intermediate_size=25600, head_dim=128),
    "Qwen3-30B-A3B": dict(hidden_size=2048, num_hidden_layers=48, num_experts=128,
                          num_experts_per_tok=8, moe_intermediate_size=768,
                          num_key_value_heads=4),
    "Mixtral-8x7B": dict(hidden_size=4096, num_hidden_layers=32, num_local_experts=8,
                         num_experts_per_tok=2, vocab_size=32000),
}


@pytest.mark.parametrize("name", list(KNOWN))
def test_catalogue_has_published_values(name: str) -> None:
    cfg = CATALOGUE[name].config
    for key, value in KNOWN[name].items():
        assert cfg[key] == value, key


@pytest.mark.parametrize("name", list(CATALOGUE))
def test_model_dir_is_complete(name: str, tmp_path: Path) -> None:
    d = write_model_dir(CATALOGUE[name], tmp_path / name)
    assert missing_files(d) == []
    cfg = json.loads((d / "config.json").read_text())
    arch_keys = set(CATALOGUE[name].config) - {"bos_token_id", "eos_token_id"}
    assert {k: cfg[k] for k in arch_keys} == {k: CATALOGUE[name].config[k] for k in arch_keys}
    tok = Tokenizer.from_file(str(d / "tokenizer.json"))
    text = "The quick brown fox, 42 times!"
    assert tok.decode(tok.encode(text).ids) == text
    tok_cfg = json.loads((d / "tokenizer_config.json").read_text())
    # the ids in config.json point at the special tokens of the trained vocabulary
    assert tok.id_to_token(cfg["eos_token_id"]) == tok_cfg["eos_token"]
    prompt = jinja2.Template(tok_cfg["chat_template"]).render(
        messages=[{"role": "system", "content": "Be brief."},
                  {"role": "user", "content": "Hello"}],
        add_generation_prompt=True, bos_token=tok_cfg["bos_token"], eos_token=tok_cfg["eos_token"])
    assert "Hello" in prompt
    encoded = tok.encode(prompt)
    specials = {t for t in encoded.tokens if t.startswith(("<|", "[INST", "<s"))}
    assert specials, "chat markers must be single special tokens"


def test_lookup_is_case_insensitive_and_accepts_hf_ids() -> None:
    assert catalogue_model("qwen3-8b") is CATALOGUE["Qwen3-8B"]
    assert catalogue_model("meta-llama/Llama-3.1-70B-Instruct") is CATALOGUE["Llama-3.1-70B"]
    assert catalogue_model("gpt-5") is None


def test_resolve_model() -> None:
    local = Path(resolve_model("Qwen3-8B", simulated=True))
    assert missing_files(local) == []
    assert resolve_model("Qwen3-8B", simulated=False) == "Qwen/Qwen3-8B"
    assert resolve_model("my-org/my-model", simulated=False) == "my-org/my-model"
    with pytest.raises(SpecError, match="model: 'my-org/my-model' is neither"):
        resolve_model("my-org/my-model", simulated=True)


def test_cli_model_make_and_list(tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, "-m", "dynamo_bench.cli", "model", "make",
                          "Llama-3.1-8B", str(tmp_path / "llama")], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert missing_files(tmp_path / "llama") == []
    bad = subprocess.run([sys.executable, "-m", "dynamo_bench.cli", "model", "make",
                          "Llama-9", str(tmp_path / "x")], capture_output=True, text=True,
                         timeout=120)
    assert bad.returncode == 2
    assert "not in the catalogue" in bad.stderr
    listing = subprocess.run([sys.executable, "-m", "dynamo_bench.cli", "model", "list"],
                             capture_output=True, text=True, timeout=120)
    assert "Qwen3-30B-A3B" in listing.stdout and "128 (top 8)" in listing.stdout

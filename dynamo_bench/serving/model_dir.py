"""Local model directories: what the frontend, the mocker and AIPerf need to serve and tokenize.

No model hub is reachable, so a catalogue model is materialised as a directory holding the real
`config.json` of its architecture, a byte-level BPE tokenizer trained here with `tokenizers`, and a
`tokenizer_config.json` with a chat template of the model's family. No weights: the mocker does not
need them, and GPU backends are pointed at a real checkpoint by the user.
"""

from __future__ import annotations

import json
import random
import re
import shutil
import tempfile
from pathlib import Path

from dynamo_bench.cache import cache_root
from dynamo_bench.errors import SpecError
from dynamo_bench.perf.models import CATALOGUE, CatalogueModel, ChatFamily, catalogue_model

#: Bump when the generated files change, so cached directories are rebuilt.
MODEL_DIR_VERSION = 1
TOKENIZER_VOCAB = 8192

_SPECIAL: dict[ChatFamily, dict[str, str]] = {
    "llama3": {"bos": "<|begin_of_text|>", "eos": "<|eot_id|>",
               "extra": "<|end_of_text|> <|start_header_id|> <|end_header_id|>"},
    "chatml": {"bos": "<|endoftext|>", "eos": "<|im_end|>", "extra": "<|im_start|>"},
    "mistral": {"bos": "<s>", "eos": "</s>", "extra": "[INST] [/INST]"},
}

_TEMPLATES: dict[ChatFamily, str] = {
    "llama3": (
        "{{- bos_token }}{%- for message in messages %}"
        "{{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'"
        " + message['content'] | trim + '<|eot_id|>' }}{%- endfor %}"
        "{%- if add_generation_prompt %}"
        "{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{%- endif %}"
    ),
    "chatml": (
        "{%- for message in messages %}"
        "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
        "{%- endfor %}{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
    ),
    "mistral": (
        "{{- bos_token }}{%- for message in messages %}"
        "{%- if message['role'] == 'user' %}{{- '[INST] ' + message['content'] + ' [/INST]' }}"
        "{%- elif message['role'] == 'assistant' %}{{- message['content'] + eos_token }}"
        "{%- else %}{{- message['content'] + '\\n\\n' }}{%- endif %}{%- endfor %}"
    ),
}

#: Files a directory must have for the frontend to serve chat completions from it.
REQUIRED_FILES = ("config.json", "tokenizer.json", "tokenizer_config.json")


def _corpus(seed: int = 0, words: int = 60000) -> list[str]:
    """Deterministic pseudo-English text: enough variety for a BPE to learn useful merges."""
    rng = random.Random(seed)
    onsets = ["", "b", "c", "d", "f", "g", "h", "l", "m", "n", "p", "r", "s", "t", "v", "w",
              "st", "th", "ch", "pr", "tr", "gr", "pl"]
    vowels = ["a", "e", "i", "o", "u", "ea", "ou", "ai", "io"]
    codas = ["", "", "n", "s", "t", "r", "l", "nd", "ng", "st", "ck"]
    lexicon = ["".join(rng.choice(onsets) + rng.choice(vowels) + rng.choice(codas)
                       for _ in range(rng.choice((1, 1, 2, 2, 3)))) for _ in range(3000)]
    lexicon += ["the", "of", "and", "to", "in", "is", "that", "for", "it", "with", "as", "was"]
    lines, line = [], []
    for i in range(words):
        word = rng.choice(lexicon)
        if rng.random() < 0.08:
            word = word.capitalize()
        if rng.random() < 0.03:
            word = str(rng.randint(0, 9999))
        line.append(word)
        if rng.random() < 0.07:
            lines.append(" ".join(line) + rng.choice([".", ",", "?", "!", ":", ";"]))
            line = []
    return lines


def _train_tokenizer(family: ChatFamily, dest: Path) -> dict[str, int]:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    special = _SPECIAL[family]
    tokens = [special["bos"], special["eos"], *special["extra"].split()]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=TOKENIZER_VOCAB, special_tokens=tokens, show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(_corpus(), trainer=trainer)
    tok.save(str(dest / "tokenizer.json"))
    return {t: tok.token_to_id(t) for t in tokens}


def write_model_dir(model: CatalogueModel, dest: Path) -> Path:
    """Write `config.json`, a trained tokenizer and `tokenizer_config.json` for `model` into `dest`.

    `dest` is created if needed; existing files of the same names are replaced.
    """
    dest.mkdir(parents=True, exist_ok=True)
    ids = _train_tokenizer(model.chat_family, dest)
    special = _SPECIAL[model.chat_family]
    config = dict(model.config)
    # Token ids must point into the locally trained vocabulary; the architecture stays real.
    config["bos_token_id"] = ids[special["bos"]]
    config["eos_token_id"] = ids[special["eos"]]
    config["_name_or_path"] = model.hf_id
    (dest / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    (dest / "generation_config.json").write_text(json.dumps(
        {"bos_token_id": config["bos_token_id"], "eos_token_id": config["eos_token_id"]},
        indent=2) + "\n")
    added = {str(i): {"content": t, "special": True, "lstrip": False, "rstrip": False,
                      "normalized": False, "single_word": False} for t, i in ids.items()}
    tok_config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": special["bos"],
        "eos_token": special["eos"],
        "pad_token": special["eos"],
        "model_max_length": config.get("max_position_embeddings", 32768),
        "added_tokens_decoder": added,
        "chat_template": _TEMPLATES[model.chat_family],
    }
    (dest / "tokenizer_config.json").write_text(json.dumps(tok_config, indent=2) + "\n")
    (dest / "dynamo_bench_model.json").write_text(json.dumps(
        {"catalogue_name": model.name, "hf_id": model.hf_id, "version": MODEL_DIR_VERSION,
         "note": "architecture from the published config.json; tokenizer trained locally; "
                 "no weights"}, indent=2) + "\n")
    return dest


def cached_model_dir(model: CatalogueModel) -> Path:
    """The cached directory for a catalogue model, built on first use (safe across processes)."""
    final = cache_root() / "models" / f"{model.name}-v{MODEL_DIR_VERSION}"
    if all((final / f).is_file() for f in REQUIRED_FILES):
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{model.name}-", dir=final.parent))
    try:
        write_model_dir(model, tmp)
        try:
            tmp.rename(final)
        except OSError:  # another process finished first; its copy is identical
            pass
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def missing_files(path: Path) -> list[str]:
    """The files a model directory needs but lacks (empty when it is usable)."""
    missing = [f for f in REQUIRED_FILES if not (path / f).is_file()]
    if "tokenizer_config.json" not in missing:
        try:
            tok_cfg = json.loads((path / "tokenizer_config.json").read_text())
        except (OSError, ValueError):
            tok_cfg = {}
        if not tok_cfg.get("chat_template") and not (path / "chat_template.jinja").is_file():
            missing.append("chat_template (in tokenizer_config.json or chat_template.jinja)")
    return missing


_HF_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def resolve_model(model: str, simulated: bool = True, field: str = "model",
                  precision: str = "bf16", backend: str | None = None) -> str:
    """Turn a spec's `model` into what the workers load.

    - an existing directory: checked for the files the frontend needs, returned as a path;
    - a catalogue name: for a simulated engine (the mocker) the cached local directory, for a GPU
      engine the model's Hugging Face id (the engine downloads the weights): its published fp8
      checkpoint when `precision` is fp8 and there is one;
    - for a GPU engine, any other `org/name` is passed through as a Hugging Face id.

    Raises:
        SpecError: a directory lacks files, or the name is none of the above, or TensorRT-LLM
            is asked for fp8 weights of a catalogue model that has no fp8 checkpoint (it cannot
            quantize at load time).
    """
    path = Path(model).expanduser()
    if path.is_dir():
        missing = missing_files(path)
        if missing:
            raise SpecError(field, f"model directory {path} lacks {', '.join(missing)} "
                            "(point at a Hugging Face model directory, or build one with "
                            "`dynamo-bench model make NAME DIR`)")
        return str(path.resolve())
    entry = catalogue_model(model)
    if entry is not None:
        if simulated:
            return str(cached_model_dir(entry))
        if backend == "trtllm" and precision == "fp8" and entry.fp8_hf_id is None:
            raise SpecError("precision", f"fp8 on trtllm needs an fp8 checkpoint and "
                            f"{entry.name} has none in the catalogue: set model to the directory "
                            "or Hugging Face id of an fp8 export, or use bf16")
        return entry.checkpoint(precision)
    if not simulated and _HF_ID.match(model) and not path.exists():
        return model
    raise SpecError(field, f"{model!r} is neither a model directory nor a catalogue model "
                    f"(catalogue: {', '.join(CATALOGUE)})")


def is_prequantized(model: str) -> bool:
    """True when `model` (what `resolve_model` returned) is a checkpoint whose weights are
    already quantized: a catalogue fp8 export, or a directory whose config.json says so."""
    if any(m.fp8_hf_id == model for m in CATALOGUE.values()):
        return True
    config = Path(model) / "config.json"
    if config.is_file():
        try:
            return "quantization_config" in json.loads(config.read_text())
        except ValueError:
            return False
    return False

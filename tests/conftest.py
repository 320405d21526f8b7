"""Shared fixtures: a tiny randomly initialised causal LM saved with the SmolLM2 tokenizer (never downloaded), and
user modules (environments, tasksets) written where `import` finds them."""

from __future__ import annotations

import importlib
import logging
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja", "special_tokens_map.json")


def build_tiny_model_dir(target: Path, seed: int = 0) -> Path:
    """Saves a 2-layer LlamaForCausalLM (hidden 64, tied embeddings, float32) and the SmolLM2 tokenizer to `target`."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from prime_rl.utils.models import resolve_model_path

    source = Path(resolve_model_path("smollm2-135m-instruct"))
    for name in TOKENIZER_FILES:
        if (source / name).is_file():
            shutil.copy(source / name, target / name)
    tokenizer = AutoTokenizer.from_pretrained(target)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config).to(torch.float32)
    model.save_pretrained(target, safe_serialization=True)
    return target


@pytest.fixture(autouse=True)
def _restore_prime_rl_logger():
    """Undoes a test's process logger set-up (an in-process trainer or orchestrator): its file handler writes into the
    test's tmp_path, which pytest deletes once the test passes, and a later test logging there would fail."""
    root = logging.getLogger("prime_rl")
    handlers, level, propagate = root.handlers[:], root.level, root.propagate
    yield
    for handler in root.handlers:
        if handler not in handlers:
            handler.close()
    root.handlers[:] = handlers
    root.setLevel(level)
    root.propagate = propagate


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A local HF model directory (tiny random Llama + SmolLM2 tokenizer and chat template), built once per session."""
    return build_tiny_model_dir(tmp_path_factory.mktemp("tiny_model"))


@pytest.fixture
def write_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[[str, str], Path]:
    """`write_module(name, source)` writes `tmp_path/<name>.py`; `tmp_path` is first on `sys.path` for the test."""
    monkeypatch.syspath_prepend(str(tmp_path))

    def write(name: str, source: str) -> Path:
        path = tmp_path / f"{name}.py"
        path.write_text(source)
        importlib.invalidate_caches()  # the directory may have been listed before this file existed
        return path

    return write

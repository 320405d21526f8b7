"""HF-format export `weights/step_N/` (safetensors, config, tokenizer; `STABLE` last), loadable by `from_pretrained`."""

from __future__ import annotations

from pathlib import Path

from transformers import PreTrainedModel, PreTrainedTokenizerBase

from prime_rl.run_dir import RunDir
from prime_rl.utils.fs import stable_dir
from prime_rl.utils.logger import get_logger


def export_hf(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, output_dir: Path, step: int) -> Path:
    """Atomically saves the model (in its training dtype) and tokenizer for policy `step`."""
    target = RunDir(output_dir).export(step)
    with stable_dir(target) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
    get_logger("trainer").info(f"Exported HF weights of step {step} to {target}")
    return target

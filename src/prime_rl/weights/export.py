"""HF-format export `weights/step_N/` (safetensors, config, tokenizer; `STABLE` last), loadable by `from_pretrained`."""

from __future__ import annotations

from pathlib import Path

from transformers import PreTrainedModel, PreTrainedTokenizerBase

from prime_rl.run_dir import RunDir
from prime_rl.trainer.parallel import gather_weights, is_sharded
from prime_rl.utils.fs import stable_dir
from prime_rl.utils.logger import get_logger


def export_hf(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, output_dir: Path, step: int) -> Path:
    """Atomically saves the model (in its training dtype) and tokenizer for policy `step`.

    A sharded model is gathered (every rank calls this) and rank 0 writes."""
    target = RunDir(output_dir).export(step)
    state = None
    if is_sharded(model):
        state = gather_weights(model)
        if state is None:
            return target
    with stable_dir(target) as tmp:
        model.save_pretrained(tmp, safe_serialization=True, state_dict=state)
        tokenizer.save_pretrained(tmp)
    get_logger("trainer").info(f"Exported HF weights of step {step} to {target}")
    return target

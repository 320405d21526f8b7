"""HF-format export `weights/step_N/` (safetensors, config, tokenizer; `STABLE` last), loadable by `from_pretrained`.

With LoRA the export is the adapter in peft's format (`PeftModel.from_pretrained(base, path)`; `adapter_config.json`
names the base model) with the tokenizer, plus merged HF weights in `merged/` when `model.lora.export_merged` is set.
"""

from __future__ import annotations

from pathlib import Path

from safetensors.torch import save_file
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from prime_rl.run_dir import RunDir
from prime_rl.trainer.lora import adapter_state, has_lora, merged_state, save_adapter_config
from prime_rl.trainer.parallel import is_sharded
from prime_rl.utils.fs import stable_dir
from prime_rl.utils.logger import get_logger
from prime_rl.weights.adapter import ADAPTER_FILE
from prime_rl.weights.broadcast import cpu_state

MERGED_DIR = "merged"
"""Subdirectory of a LoRA export holding the merged HF weights (`model.lora.export_merged`)."""


def export_hf(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, output_dir: Path, step: int, merged: bool = False
) -> Path:
    """Atomically saves the model (in its training dtype) and tokenizer for policy `step`; with LoRA the adapter,
    and with `merged` also the merged weights. A sharded model is gathered (every rank calls this) and rank 0 writes."""
    target = RunDir(output_dir).export(step)
    state = cpu_state(model)
    if state is None:
        return target
    with stable_dir(target) as tmp:
        if has_lora(model):
            save_file(adapter_state(state), str(tmp / ADAPTER_FILE), metadata={"format": "pt"})
            save_adapter_config(model, tmp)
            if merged:
                model.save_pretrained(tmp / MERGED_DIR, safe_serialization=True, state_dict=merged_state(model, state))
                tokenizer.save_pretrained(tmp / MERGED_DIR)
        else:
            model.save_pretrained(tmp, safe_serialization=True, state_dict=state if is_sharded(model) else None)
        tokenizer.save_pretrained(tmp)
    what = "the LoRA adapter" if has_lora(model) else "HF weights"
    get_logger("trainer").info(f"Exported {what} of step {step} to {target}")
    return target

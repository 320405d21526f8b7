"""Trainer → inference weight hand-off on the filesystem: `broadcasts/step_N/model.safetensors` + `STABLE`.

The file is a safetensors file (written tensor by tensor, `weights/tensor_file.py`) of the HF state dict with tied
duplicates removed (e.g. `lm_head.weight` when the embeddings are tied); the inference server loads it with
`POST /update_weights`. With LoRA the directory holds only the adapter in peft's format instead
(`adapter_model.safetensors` + `adapter_config.json`, `weights/adapter.py`), which the server merges into its base
weights.
"""

from __future__ import annotations

from pathlib import Path

import torch

from prime_rl.run_dir import RunDir, keep_last
from prime_rl.trainer.lora import adapter_state, has_lora, save_adapter_config
from prime_rl.trainer.parallel import gather_weights, is_sharded
from prime_rl.utils.fs import stable_dir
from prime_rl.weights.adapter import ADAPTER_FILE
from prime_rl.weights.state import unique_state_dict
from prime_rl.weights.tensor_file import write_tensor_file

WEIGHTS_FILE = "model.safetensors"


def cpu_state(model: torch.nn.Module) -> dict[str, torch.Tensor] | None:
    """The full state dict without tied duplicates, on CPU; a sharded model is gathered (every rank calls this) and
    only rank 0 gets it (None on the others)."""
    if is_sharded(model):
        return gather_weights(model)
    return {name: t.cpu().contiguous() for name, t in unique_state_dict(model).items()}


def broadcast_weights(model: torch.nn.Module, output_dir: Path, step: int, keep: int) -> Path:
    """Atomically writes the weights (or the LoRA adapter) of policy `step`, then keeps only the newest `keep`
    broadcast directories. A sharded model is gathered (every rank calls this) and rank 0 writes."""
    run = RunDir(output_dir)
    state = cpu_state(model)
    if state is None:
        return run.broadcast(step)
    metadata = {"format": "pt", "step": str(step)}
    with stable_dir(run.broadcast(step)) as tmp:
        if has_lora(model):
            write_tensor_file(adapter_state(state), tmp / ADAPTER_FILE, metadata)
            save_adapter_config(model, tmp)
        else:
            write_tensor_file(state, tmp / WEIGHTS_FILE, metadata)
    keep_last(run.broadcasts, keep, protect={step})
    return run.broadcast(step)

"""Trainer → inference weight hand-off on the filesystem: `broadcasts/step_N/model.safetensors` + `STABLE`.

The file is `safetensors.torch.save_file` of the HF state dict with tied duplicates removed (e.g. `lm_head.weight`
when the embeddings are tied); the inference server loads it with `POST /update_weights`.
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import save_file

from prime_rl.run_dir import RunDir, keep_last
from prime_rl.trainer.ckpt import unique_state_dict
from prime_rl.trainer.parallel import gather_weights, is_sharded
from prime_rl.utils.fs import stable_dir

WEIGHTS_FILE = "model.safetensors"


def broadcast_weights(model: torch.nn.Module, output_dir: Path, step: int, keep: int) -> Path:
    """Atomically writes the weights of policy `step`, then keeps only the newest `keep` broadcast directories.

    A sharded model is gathered (every rank calls this) and rank 0 writes."""
    run = RunDir(output_dir)
    if is_sharded(model):
        state = gather_weights(model)
        if state is None:
            return run.broadcast(step)
    else:
        state = {name: t.cpu() for name, t in unique_state_dict(model).items()}
    with stable_dir(run.broadcast(step)) as tmp:
        save_file(state, str(tmp / WEIGHTS_FILE), metadata={"format": "pt", "step": str(step)})
    keep_last(run.broadcasts, keep, protect={step})
    return run.broadcast(step)

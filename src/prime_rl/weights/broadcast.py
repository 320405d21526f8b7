"""Trainer → inference weight hand-off on the filesystem: `broadcasts/step_N/model.safetensors` + `STABLE`.

The file is `safetensors.torch.save_file` of the HF state dict with tied duplicates removed (e.g. `lm_head.weight`
when the embeddings are tied); the inference server loads it with `POST /update_weights`.
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from prime_rl.trainer.ckpt import unique_state_dict
from prime_rl.utils.fs import keep_last, stable_dir

WEIGHTS_FILE = "model.safetensors"


def broadcast_dir(output_dir: Path, step: int) -> Path:
    return Path(output_dir) / "broadcasts" / f"step_{step}"


def broadcast_weights(model: torch.nn.Module, output_dir: Path, step: int, keep: int) -> Path:
    """Atomically writes the weights of policy `step`, then keeps only the newest `keep` broadcast directories."""
    target = broadcast_dir(output_dir, step)
    state = {name: t.cpu() for name, t in unique_state_dict(model).items()}
    with stable_dir(target) as tmp:
        save_file(state, str(tmp / WEIGHTS_FILE), metadata={"format": "pt", "step": str(step)})
    keep_last(Path(output_dir) / "broadcasts", keep, protect={step})
    return target


def load_broadcast(weight_dir: Path, device: str = "cpu") -> dict[str, torch.Tensor]:
    """The state dict of a broadcast directory (for `model.load_state_dict(..., strict=False)` on a tied model)."""
    path = Path(weight_dir) / WEIGHTS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"no {WEIGHTS_FILE} in weight directory {weight_dir}")
    return load_file(str(path), device=device)

"""Trainer checkpoints: `checkpoints/step_N/trainer/` holds the state after N steps (the next step to train is N).

Written into a temporary directory and renamed, with a `STABLE` marker last, so a process killed at any moment
leaves nothing that a resume would pick (`run_dir.py` resolves the step). The orchestrator writes its own
`step_N/orchestrator/`.
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from prime_rl.run_dir import RunDir
from prime_rl.utils.fs import stable_dir
from prime_rl.utils.logger import get_logger

MODEL_FILE = "model.safetensors"
STATE_FILE = "trainer_state.pt"


def unique_state_dict(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The state dict without tied duplicates (the first name of a shared tensor wins), contiguous, detached."""
    seen: set[tuple[int, int]] = set()
    out = {}
    for name, tensor in model.state_dict().items():
        key = (tensor.untyped_storage().data_ptr(), tensor.storage_offset())
        if key in seen:
            continue
        seen.add(key)
        out[name] = tensor.detach().contiguous()
    return out


def save_checkpoint(
    output_dir: Path,
    step: int,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    extra: dict | None = None,
) -> Path:
    """Atomically writes model, optimizer, scheduler, step and RNG state after `step` steps."""
    target = RunDir(output_dir).checkpoint(step, "trainer")
    with stable_dir(target) as tmp:
        save_file(unique_state_dict(model), str(tmp / MODEL_FILE))
        state = {
            "step": step,
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "rng": torch.get_rng_state(),
            "extra": extra or {},
        }
        torch.save(state, tmp / STATE_FILE)
    get_logger("trainer").info(f"Saved checkpoint of step {step} to {target}")
    return target


def load_checkpoint(
    output_dir: Path,
    step: int,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
) -> dict:
    """Restores the state saved by `save_checkpoint`; returns its `extra` dict."""
    path = RunDir(output_dir).checkpoint(step, "trainer")
    device = next(model.parameters()).device
    missing, unexpected = model.load_state_dict(load_file(str(path / MODEL_FILE), device=str(device)), strict=False)
    tied = {name for name in missing if _is_tied(model, name)}
    if set(missing) - tied or unexpected:
        raise ValueError(f"{path / MODEL_FILE}: missing keys {sorted(set(missing) - tied)}, unexpected {unexpected}")
    state = torch.load(path / STATE_FILE, map_location=device, weights_only=False)
    if state["step"] != step:
        raise ValueError(f"{path / STATE_FILE} holds step {state['step']}, expected {step}")
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    torch.set_rng_state(state["rng"])
    get_logger("trainer").info(f"Resumed from checkpoint of step {step} ({path})")
    return state["extra"]


def _is_tied(model: torch.nn.Module, name: str) -> bool:
    state = model.state_dict()
    ptr = state[name].untyped_storage().data_ptr()
    return any(other != name and t.untyped_storage().data_ptr() == ptr for other, t in state.items())

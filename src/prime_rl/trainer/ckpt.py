"""Trainer checkpoints: `checkpoints/step_N/trainer/` holds the state after N steps (the next step to train is N).

Written into a temporary directory and renamed, with a `STABLE` marker last, so a process killed at any moment
leaves nothing that `latest_checkpoint_step` would pick. The orchestrator writes its own `step_N/orchestrator/`.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from prime_rl.utils.fs import is_stable, stable_dir
from prime_rl.utils.logger import get_logger

MODEL_FILE = "model.safetensors"
STATE_FILE = "trainer_state.pt"


def checkpoint_dir(output_dir: Path, step: int) -> Path:
    return Path(output_dir) / "checkpoints" / f"step_{step}" / "trainer"


def checkpoint_steps(output_dir: Path) -> list[int]:
    """Steps with a complete (STABLE) trainer checkpoint, ascending."""
    root = Path(output_dir) / "checkpoints"
    if not root.is_dir():
        return []
    steps = [int(p.name[5:]) for p in root.iterdir() if p.name.startswith("step_") and p.name[5:].isdigit()]
    return sorted(s for s in steps if is_stable(checkpoint_dir(output_dir, s)))


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
    target = checkpoint_dir(output_dir, step)
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


def resolve_resume_step(output_dir: Path, resume_step: int) -> int:
    """`-1` means the latest complete checkpoint; raises FileNotFoundError when there is none or N is missing."""
    steps = checkpoint_steps(output_dir)
    if resume_step == -1:
        if not steps:
            raise FileNotFoundError(f"ckpt.resume_step = -1 but no complete checkpoint under {output_dir}/checkpoints")
        return steps[-1]
    if resume_step not in steps:
        raise FileNotFoundError(
            f"ckpt.resume_step = {resume_step}: no complete checkpoint at {checkpoint_dir(output_dir, resume_step)} "
            f"(available: {steps})"
        )
    return resume_step


def load_checkpoint(
    output_dir: Path,
    step: int,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
) -> dict:
    """Restores the state saved by `save_checkpoint`; returns its `extra` dict."""
    path = checkpoint_dir(output_dir, step)
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


def prune_checkpoints(output_dir: Path, keep_last: int | None) -> None:
    """Deletes trainer checkpoints beyond the newest `keep_last` (and a step directory left empty)."""
    if keep_last is None:
        return
    for step in checkpoint_steps(output_dir)[:-keep_last]:
        path = checkpoint_dir(output_dir, step)
        shutil.rmtree(path, ignore_errors=True)
        if not any(path.parent.iterdir()):
            path.parent.rmdir()

"""Trainer checkpoints: `checkpoints/step_N/trainer/` holds the state after N steps (the next step to train is N).

Model and optimizer are a `torch.distributed.checkpoint` (DCP) checkpoint keyed by parameter name, written by every
rank (one shard file each), so it loads into any number of ranks, one process included; step, scheduler, RNG and
`extra` are `trainer_state.pt`, written by rank 0. Written into a temporary directory and renamed, with a `STABLE`
marker last, so a process killed at any moment leaves nothing that a resume would pick (`run_dir.py` resolves the
step). The orchestrator writes its own `step_N/orchestrator/`.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from pathlib import Path

import torch
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint import FileSystemReader
from torch.distributed.checkpoint.metadata import TensorStorageMetadata
from torch.distributed.checkpoint.state_dict import (
    get_model_state_dict,
    get_optimizer_state_dict,
    set_model_state_dict,
    set_optimizer_state_dict,
)

from prime_rl.run_dir import RunDir
from prime_rl.trainer.parallel import World, shared_stable_dir
from prime_rl.utils.logger import get_logger

STATE_FILE = "trainer_state.pt"


@contextlib.contextmanager
def _dcp_quietly() -> Iterator[None]:
    # DCP warns on every single-process save/load; one process is a supported case here, not a mistake.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="torch.distributed is disabled, unavailable or uninitialized")
        yield


def save_checkpoint(
    output_dir: Path,
    step: int,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    extra: dict | None = None,
) -> Path:
    """Atomically writes model, optimizer, scheduler, step and RNG state after `step` steps (every rank calls it)."""
    target = RunDir(output_dir).checkpoint(step, "trainer")
    world = World.current()
    with shared_stable_dir(target) as tmp:
        with _dcp_quietly():
            dcp.save(_dcp_state(model, optimizer), checkpoint_id=tmp, no_dist=not world.distributed)
        if world.is_main:
            state = {
                "step": step,
                "scheduler": scheduler.state_dict(),
                "rng": torch.get_rng_state(),
                "extra": extra or {},
            }
            torch.save(state, tmp / STATE_FILE)
    get_logger("trainer").info(f"Saved checkpoint of step {step} to {target}")
    return target


def _dcp_state(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> dict:
    """Model and optimizer state keyed by parameter name (sharded tensors under FSDP): the same keys for any number
    of ranks, which is what lets DCP reshard on load."""
    return {"model": get_model_state_dict(model), "optimizer": get_optimizer_state_dict(model, optimizer)}


def load_checkpoint(
    output_dir: Path,
    step: int,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
) -> dict:
    """Restores the state saved by `save_checkpoint`, with any number of ranks; returns its `extra` dict."""
    path = RunDir(output_dir).checkpoint(step, "trainer")
    state = torch.load(path / STATE_FILE, weights_only=False)
    if state["step"] != step:
        raise ValueError(f"{path / STATE_FILE} holds step {state['step']}, expected {step}")
    sharded = _dcp_state(model, optimizer)
    with _dcp_quietly():
        dcp.load(sharded, checkpoint_id=path, no_dist=not World.current().distributed)
    set_model_state_dict(model, sharded["model"])
    # The kernel (`optim.fused`) is this run's choice: loading param_groups would bring back the checkpoint's.
    kernels = {key: optimizer.defaults[key] for key in ("fused", "foreach") if key in optimizer.defaults}
    set_optimizer_state_dict(model, optimizer, sharded["optimizer"])
    for group in optimizer.param_groups:
        group.update(kernels)
    scheduler.load_state_dict(state["scheduler"])
    torch.set_rng_state(state["rng"])
    get_logger("trainer").info(f"Resumed from checkpoint of step {step} ({path})")
    return state["extra"]


def read_checkpoint_weights(path: Path) -> dict[str, torch.Tensor]:
    """The full model tensors of a checkpoint directory, in one process, on CPU (tests and tools)."""
    metadata = FileSystemReader(str(path)).read_metadata().state_dict_metadata
    prefix = "model."
    state = {
        key: torch.empty(meta.size, dtype=meta.properties.dtype)
        for key, meta in metadata.items()
        if key.startswith(prefix) and isinstance(meta, TensorStorageMetadata)
    }
    with _dcp_quietly():
        dcp.load(state, checkpoint_id=path, no_dist=True)
    return {key[len(prefix) :]: tensor for key, tensor in state.items()}

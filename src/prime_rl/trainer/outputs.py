"""What a trainer (RL or SFT) writes after a step: the checkpoint and the HF export, each on its own interval."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from prime_rl.trainer.ckpt import prune_checkpoints, save_checkpoint
from prime_rl.trainer.config import CheckpointConfig, WeightsConfig
from prime_rl.weights.export import export_hf


def save_step_outputs(
    out: Path,
    step: int,
    final: bool,
    ckpt: CheckpointConfig,
    weights: WeightsConfig,
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    extra: dict[str, Any] | None = None,
) -> dict[str, float]:
    """Checkpoint and export after `step` steps when their intervals (or `final`) say so; returns their times."""
    times = {}
    start = time.perf_counter()
    if ckpt.interval and (step % ckpt.interval == 0 or final):
        save_checkpoint(out, step, model, optimizer, scheduler, extra)
        prune_checkpoints(out, ckpt.keep_last)
    times["checkpoint"] = time.perf_counter() - start
    start = time.perf_counter()
    if (weights.interval and step % weights.interval == 0) or (final and weights.final):
        export_hf(model, tokenizer, out, step)
    times["export"] = time.perf_counter() - start
    return times

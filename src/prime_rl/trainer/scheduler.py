"""Learning-rate schedules as a multiplier of the peak rate: constant, linear (warmup-stable-decay), cosine."""

from __future__ import annotations

import math

import torch
from torch.optim.lr_scheduler import LambdaLR

from prime_rl.trainer.config import (
    ConstantSchedulerConfig,
    CosineSchedulerConfig,
    LinearSchedulerConfig,
    SchedulerConfigType,
)


def lr_factor(config: SchedulerConfigType, step: int, max_steps: int | None, peak_lr: float) -> float:
    """Multiplier of the peak learning rate used for optimizer step `step` (0-based)."""
    if step < config.warmup_steps:
        return (step + 1) / (config.warmup_steps + 1)
    if isinstance(config, ConstantSchedulerConfig) or max_steps is None:
        return 1.0
    floor = config.min_lr / peak_lr
    last = max(max_steps - 1, config.warmup_steps)
    if isinstance(config, LinearSchedulerConfig):
        decay = config.decay_steps if config.decay_steps is not None else last - config.warmup_steps
        start = last - decay
        if step <= start or decay <= 0:
            return 1.0
        return 1.0 - (1.0 - floor) * min((step - start) / decay, 1.0)
    if isinstance(config, CosineSchedulerConfig):
        span = last - config.warmup_steps
        progress = min((step - config.warmup_steps) / span, 1.0) if span > 0 else 1.0
        return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))
    raise TypeError(f"unknown scheduler config {type(config).__name__}")


def setup_scheduler(config: SchedulerConfigType, optimizer: torch.optim.Optimizer, max_steps: int | None) -> LambdaLR:
    """A LambdaLR stepped once per optimizer step; its state is part of the checkpoint."""
    peak_lr = optimizer.param_groups[0]["lr"]
    return LambdaLR(optimizer, lambda step: lr_factor(config, step, max_steps, peak_lr))

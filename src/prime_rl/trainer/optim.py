"""Optimizer construction and the gradient-clipping step."""

from __future__ import annotations

import torch
from torch.distributed.tensor import DTensor

from prime_rl.trainer.config import AdamWConfig, OptimizerConfigType, SGDConfig


def setup_optimizer(config: OptimizerConfigType, model: torch.nn.Module) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    if isinstance(config, AdamWConfig):
        implementation = {"fused": True} if config.fused else {"foreach": True}
        return torch.optim.AdamW(
            params, lr=config.lr, betas=config.betas, eps=config.eps, weight_decay=config.weight_decay, **implementation
        )
    if isinstance(config, SGDConfig):
        return torch.optim.SGD(
            params,
            lr=config.lr,
            momentum=config.momentum,
            nesterov=config.nesterov,
            weight_decay=config.weight_decay,
            foreach=True,
        )
    raise TypeError(f"unknown optimizer config {type(config).__name__}")


def clip_grad_norm(model: torch.nn.Module, max_norm: float | None) -> float:
    """Clips the global L2 gradient norm to `max_norm` (if set) and returns the norm before clipping."""
    params = [p for p in model.parameters() if p.grad is not None]
    limit = max_norm if max_norm is not None else float("inf")
    norm = torch.nn.utils.clip_grad_norm_(params, limit, foreach=True)
    if isinstance(norm, DTensor):  # sharded gradients (FSDP): the norm over all shards
        norm = norm.full_tensor()
    return float(norm)

"""One training step, shared by the RL and SFT trainers: logprobs, loss, backward (gradient accumulation), optimizer.

The two trainers differ only in the loss they pass (`setup_loss_fn(config.loss)` or `sft.loss.SFT_LOSS`).
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import Tensor

from prime_rl.trainer.logprobs import packed_logprobs
from prime_rl.trainer.optim import clip_grad_norm
from prime_rl.trainer.packing import MicroBatch
from prime_rl.trainer.rl.loss import LossFn, compute_micro_batch_loss
from prime_rl.utils.device import synchronize


@dataclass
class StepResult:
    loss: float
    grad_norm: float
    lr: float
    finite: bool
    """False when the loss or the gradient norm was NaN/inf; the optimizer step was then skipped."""
    num_tokens: int
    num_loss_tokens: int
    metrics: dict[str, list[Tensor]] = field(default_factory=dict)
    """Loss metrics, `entropy` and `trainer_probs` (on loss tokens), gathered over micro-batches."""
    times: dict[str, float] = field(default_factory=dict)


def forward_backward(
    model: torch.nn.Module, micro_batches: list[MicroBatch], loss_fn: LossFn, chunk_size: int
) -> tuple[float, dict[str, list[Tensor]]]:
    """Accumulates the gradients of all micro-batches; the loss is divided by the step's loss-token count, so the
    gradient does not depend on how the samples were packed."""
    device = next(model.parameters()).device
    loss_scale = max(sum(mb.num_loss_tokens for mb in micro_batches), 1)
    total = 0.0
    metrics: dict[str, list[Tensor]] = {}
    for mb in micro_batches:
        mb = mb.to(device)
        logprobs, entropy = packed_logprobs(
            model,
            mb.input_ids,
            mb.position_ids,
            mb.temperatures,
            mb.seq_lens,
            chunk_size,
            only=mb.loss_mask,
            shared=mb.shared,
        )
        loss, loss_metrics = compute_micro_batch_loss(logprobs, mb, loss_fn, loss_scale)
        loss.backward()
        total += float(loss.detach())
        mask = mb.loss_mask
        loss_metrics |= {"entropy": entropy[mask], "trainer_probs": logprobs.detach()[mask].exp()}
        for name, value in loss_metrics.items():
            metrics.setdefault(name, []).append(value.detach().float().reshape(-1).cpu())
    return total, metrics


def train_step(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    micro_batches: list[MicroBatch],
    loss_fn: LossFn,
    max_norm: float | None,
    chunk_size: int,
) -> StepResult:
    """Forward/backward over all micro-batches, clip, optimizer and scheduler step (no optimizer step if non-finite)."""
    device = next(model.parameters()).device
    start = time.perf_counter()
    loss, metrics = forward_backward(model, micro_batches, loss_fn, chunk_size)
    synchronize(device)
    mid = time.perf_counter()
    grad_norm = clip_grad_norm(model, max_norm)
    finite = math.isfinite(loss) and math.isfinite(grad_norm)
    lr = optimizer.param_groups[0]["lr"]
    if finite:
        optimizer.step()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    synchronize(device)
    end = time.perf_counter()
    return StepResult(
        loss=loss,
        grad_norm=grad_norm,
        lr=lr,
        finite=finite,
        num_tokens=sum(mb.num_tokens for mb in micro_batches),
        num_loss_tokens=sum(mb.num_loss_tokens for mb in micro_batches),
        metrics=metrics,
        times={"forward_backward": mid - start, "optimizer": end - mid},
    )


def check_finite(
    result: StepResult, step: int, on_nonfinite: Literal["stop", "skip"], key: str, logger: logging.Logger
) -> None:
    """After a step whose loss or gradient norm was NaN/inf (its optimizer step was skipped): raises
    FloatingPointError naming the step and the config `key` when `on_nonfinite` is "stop", else warns."""
    if result.finite:
        return
    if on_nonfinite == "stop":
        raise FloatingPointError(
            f"step {step}: non-finite loss {result.loss} (gradient norm {result.grad_norm}); stopping because "
            f'{key} = "stop" (set "skip" to skip such steps)'
        )
    logger.warning(f"step {step}: non-finite loss {result.loss} or gradient norm; optimizer step skipped")

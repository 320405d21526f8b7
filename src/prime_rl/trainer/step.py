"""One training step, shared by the RL and SFT trainers: logprobs, loss, backward (gradient accumulation), optimizer.
Under FSDP each rank runs its share of the micro-batches (`parallel.py`) and the gradients are summed.

The two trainers differ only in the loss they pass (`setup_loss_fn(config.loss)` or `sft.loss.SFT_LOSS`).
"""

from __future__ import annotations

import functools
import logging
import math
import time
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import Tensor

from prime_rl.trainer.in_place_grad import in_place_grads
from prime_rl.trainer.logprobs import packed_logprobs
from prime_rl.trainer.optim import clip_grad_norm
from prime_rl.trainer.packing import MicroBatch
from prime_rl.trainer.parallel import (
    LOGPROBS_METHOD,
    World,
    is_sharded,
    padding_pass,
    rank_micro_batches,
    reduce_step,
)
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
    model: torch.nn.Module,
    micro_batches: list[MicroBatch],
    loss_fn: LossFn,
    chunk_size: int,
    loss_scale: int | None = None,
) -> tuple[float, dict[str, list[Tensor]]]:
    """Accumulates the gradients of all micro-batches; the loss is divided by the step's loss-token count
    (`loss_scale`, default: that of `micro_batches`), so the gradient does not depend on how the samples were packed
    or spread over ranks."""
    device = next(model.parameters()).device
    if loss_scale is None:
        loss_scale = max(sum(mb.num_loss_tokens for mb in micro_batches), 1)
    logprobs_fn = getattr(model, LOGPROBS_METHOD) if is_sharded(model) else functools.partial(packed_logprobs, model)
    total = 0.0
    metrics: dict[str, list[Tensor]] = {}
    for mb in micro_batches:
        mb = mb.to(device)
        with in_place_grads():
            logprobs, entropy = logprobs_fn(
                mb.input_ids,
                mb.position_ids,
                mb.temperatures,
                mb.seq_lens,
                chunk_size,
                only=mb.loss_mask,
                shared=mb.shared,
            )
        loss, loss_metrics = compute_micro_batch_loss(logprobs, mb, loss_fn, loss_scale, mb.teacher_logprobs)
        loss.backward()
        total += float(loss.detach())
        mask = mb.loss_mask
        loss_metrics |= {"entropy": entropy[mask], "trainer_probs": logprobs.detach()[mask].exp()}
        for name, value in loss_metrics.items():
            metrics.setdefault(name, []).append(value.detach().float().reshape(-1).cpu())
    return total, metrics


def sharded_forward_backward(
    model: torch.nn.Module, micro_batches: list[MicroBatch], loss_fn: LossFn, chunk_size: int
) -> tuple[float, dict[str, list[Tensor]]]:
    """`forward_backward` of this rank's share of the step (every rank holds all `micro_batches`), padded to the
    busiest rank's number of passes; the loss and metrics of all ranks."""
    loss_scale = max(sum(mb.num_loss_tokens for mb in micro_batches), 1)
    mine, padding = rank_micro_batches(micro_batches, World.current())
    loss, metrics = forward_backward(model, mine, loss_fn, chunk_size, loss_scale)
    for _ in range(padding):
        padding_pass(model, chunk_size, next(model.parameters()).device)
    return reduce_step(loss, metrics)


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
    backward = sharded_forward_backward if is_sharded(model) else forward_backward
    loss, metrics = backward(model, micro_batches, loss_fn, chunk_size)
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

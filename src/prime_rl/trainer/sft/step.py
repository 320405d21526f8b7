"""One SFT step: token-mean cross-entropy on the assistant tokens of packed micro-batches, then the optimizer."""

from __future__ import annotations

import math
import time

import torch

from prime_rl.trainer.logprobs import packed_logprobs
from prime_rl.trainer.optim import clip_grad_norm
from prime_rl.trainer.packing import MicroBatch
from prime_rl.trainer.rl.step import StepResult
from prime_rl.utils.device import synchronize


def sft_forward_backward(
    model: torch.nn.Module, micro_batches: list[MicroBatch], chunk_size: int
) -> tuple[float, dict[str, list[torch.Tensor]]]:
    """Accumulates gradients; each micro-batch's summed NLL is divided by the loss tokens of the whole step, so the
    gradient does not depend on how the conversations were packed."""
    device = next(model.parameters()).device
    loss_scale = max(sum(mb.num_loss_tokens for mb in micro_batches), 1)
    total = 0.0
    entropies = []
    for mb in micro_batches:
        mb = mb.to(device)
        logprobs, entropy = packed_logprobs(
            model, mb.input_ids, mb.position_ids, mb.temperatures, mb.seq_lens, chunk_size
        )
        loss = -logprobs[mb.loss_mask].sum() / loss_scale
        loss.backward()
        total += float(loss.detach())
        entropies.append(entropy[mb.loss_mask].detach().float().cpu())
    return total, {"entropy": entropies}


def sft_step(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    micro_batches: list[MicroBatch],
    max_norm: float | None,
    chunk_size: int,
) -> StepResult:
    """Forward/backward, clip, optimizer and scheduler step. Raises on a non-finite gradient norm."""
    device = next(model.parameters()).device
    start = time.perf_counter()
    loss, metrics = sft_forward_backward(model, micro_batches, chunk_size)
    synchronize(device)
    mid = time.perf_counter()
    grad_norm = clip_grad_norm(model, max_norm)
    if not math.isfinite(grad_norm):
        raise FloatingPointError(f"gradient norm is {grad_norm} (loss {loss}); refusing the optimizer step")
    lr = optimizer.param_groups[0]["lr"]
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    synchronize(device)
    return StepResult(
        loss=loss,
        grad_norm=grad_norm,
        lr=lr,
        finite=True,
        num_tokens=sum(mb.num_tokens for mb in micro_batches),
        num_loss_tokens=sum(mb.num_loss_tokens for mb in micro_batches),
        metrics=metrics,
        times={"forward_backward": mid - start, "optimizer": time.perf_counter() - mid},
    )

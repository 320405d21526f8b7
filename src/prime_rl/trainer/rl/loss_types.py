"""The loss plug-in contract (architecture.md §4): one sequence in, its summed loss and metrics out.

Kept apart from `loss.py` so the built-in losses (`losses/*`) import the contract without importing the dispatcher.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from jaxtyping import Bool, Float
from torch import Tensor


@dataclass
class LossInputs:
    """One sequence (prompt + completion) of a packed micro-batch."""

    trainer_logprobs: Float[Tensor, " seq"]
    """Logprobs of the current policy; requires grad."""
    inference_logprobs: Float[Tensor, " seq"]
    """Logprobs of the sampling (inference) policy after temperature; 0 on prompt and environment tokens."""
    teacher_logprobs: Float[Tensor, " seq"] | None
    """Logprobs of the teacher, or None when no teacher is configured."""
    advantages: Float[Tensor, " seq"]
    """The sample's advantage repeated on every token."""
    loss_mask: Bool[Tensor, " seq"]
    """True on tokens the model generated (trained on)."""


@dataclass
class LossOutputs:
    """The summed (not averaged) loss of one sequence and its metrics."""

    loss: Float[Tensor, ""]
    """Sum over the sequence; the framework divides the total by `loss_scale`."""
    metrics: dict[str, Tensor]
    """0-d tensors are one value per sequence, 1-d tensors are per token."""


LossFn = Callable[[LossInputs], LossOutputs]
"""A configured loss: `loss_fn(inputs: LossInputs) -> LossOutputs` (kwargs already bound by `setup_loss_fn`)."""


def masked_mean(values: Tensor, mask: Tensor) -> Tensor:
    """Mean of `values` over `mask`; 0 for an empty mask."""
    return torch.where(mask, values, 0).sum() / mask.sum().clamp_min(1)

"""The configured loss (`setup_loss_fn`) and its aggregation over the sequences of a step (architecture.md §4).

A loss function returns the SUM over its sequence's loss tokens; `compute_loss` adds the sequences up and divides by
`loss_scale` (the number of loss tokens of the whole step), so the gradient does not depend on how samples are packed.
The contract types live in `loss_types.py` and are re-exported here (the seed's import path).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import torch
from jaxtyping import Bool, Float
from torch import Tensor

from prime_rl.trainer.packing import MicroBatch
from prime_rl.trainer.rl.config import CustomLossConfig, LossConfig, LossConfigType
from prime_rl.trainer.rl.loss_types import LossFn, LossInputs, LossOutputs, masked_mean
from prime_rl.trainer.rl.losses import LOSS_FUNCTIONS
from prime_rl.trainer.rl.losses.default import default_loss_fn, packed_default_loss

__all__ = [
    "Loss",
    "LossFn",
    "LossInputs",
    "LossOutputs",
    "PackedLossFn",
    "compute_loss",
    "compute_micro_batch_loss",
    "default_loss_fn",
    "masked_mean",
    "setup_loss_fn",
]

PackedLossFn = Callable[[LossInputs, list[int]], LossOutputs]
"""`packed(inputs, seq_lens) -> LossOutputs`: `inputs` span a whole micro-batch whose sequences have lengths
`seq_lens`; returns the sum of the per-sequence losses and the metrics already aggregated (1-d: per sequence or per
token), exactly what calling the loss on each sequence and `aggregate_metrics` would give."""


@dataclass(frozen=True)
class Loss:
    """A configured loss: called once per sequence on the seed's contract, with an optional vectorised fast path.

    `setup_loss_fn` builds both from the same config, so the fast path always computes the loss it stands for.
    """

    per_sequence: LossFn
    """`fn(inputs: LossInputs) -> LossOutputs` with its kwargs bound."""
    packed: PackedLossFn | None = None
    """The same loss over a whole packed micro-batch (None: the trainer calls `per_sequence` on each sequence)."""

    def __call__(self, inputs: LossInputs) -> LossOutputs:
        return self.per_sequence(inputs)


def check_loss_outputs(out: object, inputs: LossInputs, name: str) -> LossOutputs:
    """Validates what a loss function returned; raises TypeError/ValueError naming the function."""
    if not isinstance(out, LossOutputs):
        raise TypeError(f"loss function `{name}` returned {type(out).__name__}, expected LossOutputs")
    if not isinstance(out.loss, Tensor):
        raise TypeError(f"loss function `{name}` returned a loss of type {type(out.loss).__name__}, expected a Tensor")
    if out.loss.ndim != 0:
        raise ValueError(f"loss function `{name}` returned a non-scalar loss of shape {tuple(out.loss.shape)}")
    if inputs.trainer_logprobs.requires_grad and not out.loss.requires_grad:
        raise ValueError(f"loss function `{name}` returned a loss without grad (is it detached from trainer_logprobs?)")
    if not isinstance(out.metrics, dict):
        raise TypeError(f"loss function `{name}` returned metrics of type {type(out.metrics).__name__}, expected dict")
    metrics = {}
    for key, value in out.metrics.items():
        if isinstance(value, int | float):
            value = torch.tensor(float(value))
        if not isinstance(value, Tensor) or value.ndim > 1:
            kind = f"shape {tuple(value.shape)}" if isinstance(value, Tensor) else f"type {type(value).__name__}"
            raise ValueError(f"loss function `{name}` returned metric `{key}` of {kind}, expected a 0-d or 1-d tensor")
        metrics[key] = value
    return LossOutputs(loss=out.loss, metrics=metrics)


def setup_loss_fn(loss_config: LossConfigType) -> Loss:
    """The configured loss with its kwargs bound; a custom `import_path` is imported and checked here (ConfigError)."""
    if isinstance(loss_config, LossConfig):
        return Loss(
            per_sequence=functools.partial(default_loss_fn, loss_config=loss_config),
            packed=functools.partial(packed_default_loss, loss_config=loss_config),
        )
    if isinstance(loss_config, CustomLossConfig):
        return Loss(per_sequence=loss_config.load_plugin(check_loss_outputs))
    kwargs = loss_config.model_dump(exclude={"type"})
    return Loss(per_sequence=functools.partial(LOSS_FUNCTIONS[loss_config.type], **kwargs))


def aggregate_metrics(per_sequence: list[dict[str, Tensor]]) -> dict[str, Tensor]:
    """Stacks 0-d metrics into one value per sequence and concatenates 1-d (per-token) metrics."""
    values: dict[str, list[Tensor]] = {}
    for metrics in per_sequence:
        for key, value in metrics.items():
            values.setdefault(key, []).append(value.detach())
    out = {}
    for key, tensors in values.items():
        dims = {t.ndim for t in tensors}
        if len(dims) > 1:
            raise ValueError(f"metric `{key}` is 0-d for some sequences and 1-d for others")
        out[key] = torch.stack(tensors) if dims == {0} else torch.cat(tensors)
    return out


def compute_loss(
    trainer_logprobs: list[Float[Tensor, " seq"]],
    inference_logprobs: list[Float[Tensor, " seq"]],
    teacher_logprobs: list[Float[Tensor, " seq"]] | None,
    advantages: list[Float[Tensor, " seq"]],
    loss_mask: list[Bool[Tensor, " seq"]],
    loss_fn: LossFn,
    loss_scale: float,
) -> tuple[Float[Tensor, ""], dict[str, Tensor]]:
    """Calls `loss_fn` per sequence, sums the losses and divides by `loss_scale`; aggregates the metrics."""
    if loss_scale <= 0:
        raise ValueError(f"loss_scale must be positive, got {loss_scale}")
    teachers = teacher_logprobs if teacher_logprobs is not None else [None] * len(trainer_logprobs)
    total: Tensor | float = 0.0
    per_sequence = []
    for lp, inf_lp, teacher_lp, adv, mask in zip(
        trainer_logprobs, inference_logprobs, teachers, advantages, loss_mask, strict=True
    ):
        out = loss_fn(LossInputs(lp, inf_lp, teacher_lp, adv, mask))
        total = total + out.loss
        per_sequence.append(out.metrics)
    if not isinstance(total, Tensor):
        raise ValueError("compute_loss needs at least one sequence")
    return total / loss_scale, aggregate_metrics(per_sequence)


def compute_micro_batch_loss(
    trainer_logprobs: Float[Tensor, " tokens"],
    micro_batch: MicroBatch,
    loss_fn: LossFn,
    loss_scale: float,
    teacher_logprobs: Float[Tensor, " tokens"] | None = None,
) -> tuple[Float[Tensor, ""], dict[str, Tensor]]:
    """Loss of one packed micro-batch (its sequences concatenated), equal to `compute_loss` on its sequences.

    A `Loss` with a packed fast path runs vectorised over all sequences; any other loss is called once per sequence.
    """
    seq_lens, num_tokens = micro_batch.seq_lens, trainer_logprobs.shape[0]
    if sum(seq_lens) != num_tokens or any(n <= 0 for n in seq_lens):
        raise ValueError(
            f"seq_lens must be positive and sum to the {num_tokens} tokens, "
            f"got {len(seq_lens)} lengths summing to {sum(seq_lens)} (min {min(seq_lens, default=0)})"
        )
    if loss_scale <= 0:
        raise ValueError(f"loss_scale must be positive, got {loss_scale}")
    mb = micro_batch
    if isinstance(loss_fn, Loss) and loss_fn.packed is not None:
        inputs = LossInputs(trainer_logprobs, mb.inference_logprobs, teacher_logprobs, mb.advantages, mb.loss_mask)
        out = loss_fn.packed(inputs, seq_lens)
        return out.loss / loss_scale, out.metrics

    def split(t: Tensor | None) -> list[Tensor] | None:
        return list(torch.split(t, seq_lens)) if t is not None else None

    lp, inf_lp, teacher_lp = split(trainer_logprobs), split(mb.inference_logprobs), split(teacher_logprobs)
    return compute_loss(lp, inf_lp, teacher_lp, split(mb.advantages), split(mb.loss_mask), loss_fn, loss_scale)

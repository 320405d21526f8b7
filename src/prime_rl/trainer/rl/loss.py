"""The loss plug-in contract (one sequence in, a summed loss and metrics out), the default loss, and its aggregation.

A loss function returns the SUM over its sequence's loss tokens; `compute_loss` adds the sequences up and divides by
`loss_scale` (the number of loss tokens of the whole step), so the gradient does not depend on how samples are packed.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import torch
from jaxtyping import Bool, Float
from torch import Tensor

from prime_rl.trainer.rl.config import CustomLossConfig, LossConfig, LossConfigType
from prime_rl.trainer.rl.loss_packed import packed_default_loss
from prime_rl.utils.config import bind_kwargs, import_object


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


def default_loss_fn(inputs: LossInputs, loss_config: LossConfig) -> LossOutputs:
    """Masked importance sampling against the inference policy (DESIGN.md section 4)."""
    cfg, lp, mask = loss_config, inputs.trainer_logprobs, inputs.loss_mask
    log_ratio = (lp - inputs.inference_logprobs).detach()
    ratio = torch.exp(log_ratio)
    geo = torch.exp(masked_mean(log_ratio, mask))
    token_low, token_high = ratio < cfg.token_mask_low, ratio > cfg.token_mask_high
    # "any loss token below/above" is the same test as "min/max over loss tokens below/above".
    seq_low = (mask & (ratio < cfg.sequence_mask_low)).any()
    seq_high = (mask & (ratio > cfg.sequence_mask_high)).any()
    geo_low, geo_high = geo < cfg.geo_mask_low, geo > cfg.geo_mask_high
    is_masked = token_low | token_high | seq_low | seq_high | geo_low | geo_high
    keep = mask & ~is_masked

    if cfg.ratio_type == "sequence":
        seq_log_ratio = torch.where(mask, log_ratio, 0).sum().clamp(max=10.0)
        weight = torch.exp(seq_log_ratio).clamp(max=cfg.sequence_clip_high)
    else:
        weight = ratio
    advantages = cfg.adv_tau * inputs.advantages
    if inputs.teacher_logprobs is not None:
        advantages = advantages + cfg.teacher_tau * (inputs.teacher_logprobs - lp.detach())
    # Zero the coefficient (not the product) so an inf ratio on a masked token cannot turn the gradient into NaN.
    coeff = torch.where(keep, weight * (advantages - cfg.kl_tau * log_ratio), 0).detach()
    loss = -(coeff * lp).sum()
    if cfg.ratio_type == "sequence":
        loss = loss / mask.sum().clamp_min(1)

    token_kl = ratio - log_ratio - 1
    metrics = {
        "mismatch_kl": masked_mean(token_kl, mask),
        "masked_mismatch_kl": masked_mean(token_kl, mask & is_masked),
        "unmasked_mismatch_kl": masked_mean(token_kl, keep),
        "is_masked": is_masked[mask].float(),
        "is_masked_low": token_low[mask].float(),
        "is_masked_high": token_high[mask].float(),
        "sequence_masked_low": seq_low.float(),
        "sequence_masked_high": seq_high.float(),
        "geo_masked_low": geo_low.float(),
        "geo_masked_high": geo_high.float(),
        "geo_seq_ratio": geo,
    }
    if inputs.teacher_logprobs is not None:
        metrics["teacher_kl"] = masked_mean((lp - inputs.teacher_logprobs).detach(), mask)
    return LossOutputs(loss=loss, metrics=metrics)


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


def _checked(fn: Callable[..., LossOutputs], name: str, kwargs: dict) -> LossFn:
    def loss_fn(inputs: LossInputs) -> LossOutputs:
        return check_loss_outputs(fn(inputs, **kwargs), inputs, name)

    loss_fn.__qualname__ = name
    return loss_fn


def setup_loss_fn(loss_config: LossConfigType) -> LossFn:
    """The configured loss with its kwargs bound; a custom `import_path` is imported and checked here (ConfigError)."""
    if isinstance(loss_config, LossConfig):
        return functools.partial(default_loss_fn, loss_config=loss_config)
    if isinstance(loss_config, CustomLossConfig):
        fn = import_object(loss_config.import_path, "function")
        bind_kwargs(fn, loss_config.import_path, loss_config.kwargs)
        return _checked(fn, loss_config.import_path, dict(loss_config.kwargs))
    from prime_rl.trainer.rl.losses import LOSS_FUNCTIONS

    kwargs = loss_config.model_dump(exclude={"type"})
    return functools.partial(LOSS_FUNCTIONS[loss_config.type], **kwargs)


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
    inference_logprobs: Float[Tensor, " tokens"],
    teacher_logprobs: Float[Tensor, " tokens"] | None,
    advantages: Float[Tensor, " tokens"],
    loss_mask: Bool[Tensor, " tokens"],
    seq_lens: list[int],
    loss_fn: LossFn,
    loss_config: LossConfigType,
    loss_scale: float,
) -> tuple[Float[Tensor, ""], dict[str, Tensor]]:
    """Loss of one packed micro-batch (sequences concatenated, `sum(seq_lens) == tokens`), equal to `compute_loss`.

    The default loss runs vectorized over all sequences; any other loss is called once per sequence.
    """
    num_tokens = trainer_logprobs.shape[0]
    if sum(seq_lens) != num_tokens or any(n <= 0 for n in seq_lens):
        raise ValueError(
            f"seq_lens must be positive and sum to the {num_tokens} tokens, "
            f"got {len(seq_lens)} lengths summing to {sum(seq_lens)} (min {min(seq_lens, default=0)})"
        )
    if loss_scale <= 0:
        raise ValueError(f"loss_scale must be positive, got {loss_scale}")
    if isinstance(loss_config, LossConfig):
        loss, metrics = packed_default_loss(
            trainer_logprobs, inference_logprobs, teacher_logprobs, advantages, loss_mask, seq_lens, loss_config
        )
        return loss / loss_scale, metrics

    def split(t: Tensor) -> list[Tensor]:
        return list(torch.split(t, seq_lens))

    teachers = split(teacher_logprobs) if teacher_logprobs is not None else None
    return compute_loss(
        split(trainer_logprobs),
        split(inference_logprobs),
        teachers,
        split(advantages),
        split(loss_mask),
        loss_fn,
        loss_scale,
    )

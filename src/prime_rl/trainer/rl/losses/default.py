"""The default loss: masked importance sampling against the inference policy (architecture.md §4), written once.

`packed_default_loss` runs on a whole packed micro-batch: per-sequence terms are segment sums, so there is no Python
loop over sequences; `default_loss_fn` (the seed's per-sequence form) is the same code on a single segment. Masks are
applied by multiplication where values are finite: on CPU it is several times faster than `where`.
"""

from __future__ import annotations

import torch
from torch import Tensor

from prime_rl.trainer.rl.config import LossConfig
from prime_rl.trainer.rl.loss_types import LossInputs, LossOutputs


def _default_loss(
    inputs: LossInputs, seq_lens: list[int], cfg: LossConfig
) -> tuple[Tensor, dict[str, Tensor], dict[str, Tensor]]:
    """Summed loss over the segments `seq_lens` of `inputs`, metrics per sequence (1-d) and per loss token."""
    lp, mask = inputs.trainer_logprobs, inputs.loss_mask
    lens = torch.tensor(seq_lens, device=lp.device)

    def seg_sum(values: Tensor) -> Tensor:
        return torch.segment_reduce(values.to(lp.dtype), "sum", lengths=lens)

    def per_token(values: Tensor) -> Tensor:
        return torch.repeat_interleave(values, lens)

    mask_f = mask.to(lp.dtype)
    num_loss_tokens = seg_sum(mask_f).clamp_min(1)
    log_ratio = (lp - inputs.inference_logprobs).detach()
    ratio = torch.exp(log_ratio)
    geo = torch.exp(seg_sum(log_ratio * mask_f) / num_loss_tokens)
    token_low, token_high = ratio < cfg.token_mask_low, ratio > cfg.token_mask_high
    # "any loss token below/above" is the same test as "min/max over loss tokens below/above".
    seq_low = seg_sum(mask & (ratio < cfg.sequence_mask_low)) > 0
    seq_high = seg_sum(mask & (ratio > cfg.sequence_mask_high)) > 0
    geo_low, geo_high = geo < cfg.geo_mask_low, geo > cfg.geo_mask_high
    is_masked = token_low | token_high | per_token(seq_low | seq_high | geo_low | geo_high)
    keep = mask & ~is_masked

    if cfg.ratio_type == "sequence":
        seq_log_ratio = seg_sum(log_ratio * mask_f).clamp(max=10.0)
        weight = per_token(torch.exp(seq_log_ratio).clamp(max=cfg.sequence_clip_high) / num_loss_tokens)
    else:
        weight = ratio
    adv = inputs.advantages if cfg.adv_tau == 1.0 else cfg.adv_tau * inputs.advantages
    if inputs.teacher_logprobs is not None:
        adv = adv + cfg.teacher_tau * (inputs.teacher_logprobs - lp.detach())
    if cfg.kl_tau != 0.0:
        adv = adv - cfg.kl_tau * log_ratio
    # `where`, not a product: a masked token may carry an infinite ratio, which must not turn the gradient into NaN.
    coeff = torch.where(keep, weight * adv, 0).detach()
    loss = -(coeff * lp).sum()

    token_kl = ratio - log_ratio - 1
    masked = mask & is_masked
    loss_tokens = mask.nonzero().squeeze(1)
    per_sequence = {
        "mismatch_kl": seg_sum(token_kl * mask_f) / num_loss_tokens,
        "masked_mismatch_kl": seg_sum(token_kl * masked) / seg_sum(masked).clamp_min(1),
        "unmasked_mismatch_kl": seg_sum(token_kl * keep) / seg_sum(keep).clamp_min(1),
        "sequence_masked_low": seq_low.float(),
        "sequence_masked_high": seq_high.float(),
        "geo_masked_low": geo_low.float(),
        "geo_masked_high": geo_high.float(),
        "geo_seq_ratio": geo,
    }
    if inputs.teacher_logprobs is not None:
        per_sequence["teacher_kl"] = seg_sum((lp.detach() - inputs.teacher_logprobs) * mask_f) / num_loss_tokens
    per_loss_token = {
        "is_masked": is_masked.index_select(0, loss_tokens).float(),
        "is_masked_low": token_low.index_select(0, loss_tokens).float(),
        "is_masked_high": token_high.index_select(0, loss_tokens).float(),
    }
    return loss, per_sequence, per_loss_token


def default_loss_fn(inputs: LossInputs, loss_config: LossConfig) -> LossOutputs:
    """The default loss of one sequence: its summed loss, 0-d sequence metrics and 1-d per-loss-token metrics."""
    loss, per_sequence, per_loss_token = _default_loss(inputs, [inputs.trainer_logprobs.shape[0]], loss_config)
    return LossOutputs(loss=loss, metrics={k: v[0] for k, v in per_sequence.items()} | per_loss_token)


def packed_default_loss(inputs: LossInputs, seq_lens: list[int], loss_config: LossConfig) -> LossOutputs:
    """The default loss summed over the sequences `seq_lens` of a packed micro-batch; metrics already aggregated
    (one value per sequence, or per loss token), as `aggregate_metrics` would stack `default_loss_fn`'s."""
    loss, per_sequence, per_loss_token = _default_loss(inputs, seq_lens, loss_config)
    return LossOutputs(loss=loss, metrics=per_sequence | per_loss_token)

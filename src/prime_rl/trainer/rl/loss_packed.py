"""The default loss vectorized over a packed micro-batch: per-sequence terms become segment sums (no Python loop).

Same numbers as calling `default_loss_fn` on each sequence and summing (tests pin it to 1e-6 in float64), for finite
logprobs. Masks are applied by multiplication where values are finite: on CPU it is several times faster than `where`.
"""

from __future__ import annotations

import torch
from jaxtyping import Bool, Float
from torch import Tensor

from prime_rl.trainer.rl.config import LossConfig


def packed_default_loss(
    trainer_logprobs: Float[Tensor, " tokens"],
    inference_logprobs: Float[Tensor, " tokens"],
    teacher_logprobs: Float[Tensor, " tokens"] | None,
    advantages: Float[Tensor, " tokens"],
    loss_mask: Bool[Tensor, " tokens"],
    seq_lens: list[int],
    cfg: LossConfig,
) -> tuple[Float[Tensor, ""], dict[str, Tensor]]:
    """Summed default loss over all sequences (not yet divided by loss_scale) and the per-sequence metrics."""
    lp, mask = trainer_logprobs, loss_mask
    lens = torch.tensor(seq_lens, device=lp.device)

    def seg_sum(values: Tensor) -> Tensor:
        return torch.segment_reduce(values.to(lp.dtype), "sum", lengths=lens)

    def per_token(values: Tensor) -> Tensor:
        return torch.repeat_interleave(values, lens)

    mask_f = mask.to(lp.dtype)
    num_loss_tokens = seg_sum(mask_f).clamp_min(1)
    log_ratio = (lp - inference_logprobs).detach()
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
    adv = advantages if cfg.adv_tau == 1.0 else cfg.adv_tau * advantages
    if teacher_logprobs is not None:
        adv = adv + cfg.teacher_tau * (teacher_logprobs - lp.detach())
    if cfg.kl_tau != 0.0:
        adv = adv - cfg.kl_tau * log_ratio
    # `where`, not a product: a masked token may carry an infinite ratio.
    coeff = torch.where(keep, weight * adv, 0).detach()
    loss = -(coeff * lp).sum()

    token_kl = ratio - log_ratio - 1
    masked = mask & is_masked
    loss_tokens = mask.nonzero().squeeze(1)
    metrics = {
        "mismatch_kl": seg_sum(token_kl * mask_f) / num_loss_tokens,
        "masked_mismatch_kl": seg_sum(token_kl * masked) / seg_sum(masked).clamp_min(1),
        "unmasked_mismatch_kl": seg_sum(token_kl * keep) / seg_sum(keep).clamp_min(1),
        "is_masked": is_masked.index_select(0, loss_tokens).float(),
        "is_masked_low": token_low.index_select(0, loss_tokens).float(),
        "is_masked_high": token_high.index_select(0, loss_tokens).float(),
        "sequence_masked_low": seq_low.float(),
        "sequence_masked_high": seq_high.float(),
        "geo_masked_low": geo_low.float(),
        "geo_masked_high": geo_high.float(),
        "geo_seq_ratio": geo,
    }
    if teacher_logprobs is not None:
        metrics["teacher_kl"] = seg_sum((lp.detach() - teacher_logprobs) * mask_f) / num_loss_tokens
    return loss, metrics

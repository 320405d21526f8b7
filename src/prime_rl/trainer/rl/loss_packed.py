"""The default loss vectorized over a packed micro-batch: per-sequence terms become segment sums (no Python loop).

Same numbers as calling `default_loss_fn` on each sequence and summing (tests pin it to 1e-6 in float64).
"""

from __future__ import annotations

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from prime_rl.trainer.rl.config import LossConfig


def _segment_sum(values: Tensor, segment: Int[Tensor, " tokens"], num_segments: int) -> Float[Tensor, " segments"]:
    out = torch.zeros(num_segments, dtype=values.dtype, device=values.device)
    return out.index_add_(0, segment, values)


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
    lp, mask, num_seqs = trainer_logprobs, loss_mask, len(seq_lens)
    lens = torch.tensor(seq_lens, device=lp.device)
    segment = torch.repeat_interleave(torch.arange(num_seqs, device=lp.device), lens)

    def seg_sum(values: Tensor) -> Tensor:
        return _segment_sum(values, segment, num_seqs)

    def seg_mean(values: Tensor, where: Tensor) -> Tensor:
        return seg_sum(torch.where(where, values, 0)) / seg_sum(where.to(values.dtype)).clamp_min(1)

    def seg_any(where: Tensor) -> Tensor:
        return seg_sum(where.to(lp.dtype)) > 0

    log_ratio = (lp - inference_logprobs).detach()
    ratio = torch.exp(log_ratio)
    geo = torch.exp(seg_mean(log_ratio, mask))
    token_low, token_high = ratio < cfg.token_mask_low, ratio > cfg.token_mask_high
    seq_low = seg_any(mask & (ratio < cfg.sequence_mask_low))
    seq_high = seg_any(mask & (ratio > cfg.sequence_mask_high))
    geo_low, geo_high = geo < cfg.geo_mask_low, geo > cfg.geo_mask_high
    seq_masked = (seq_low | seq_high | geo_low | geo_high)[segment]
    is_masked = token_low | token_high | seq_masked
    keep = mask & ~is_masked
    num_loss_tokens = seg_sum(mask.to(lp.dtype)).clamp_min(1)

    if cfg.ratio_type == "sequence":
        seq_log_ratio = seg_sum(torch.where(mask, log_ratio, 0)).clamp(max=10.0)
        weight = torch.exp(seq_log_ratio).clamp(max=cfg.sequence_clip_high)[segment]
    else:
        weight = ratio
    adv = cfg.adv_tau * advantages
    if teacher_logprobs is not None:
        adv = adv + cfg.teacher_tau * (teacher_logprobs - lp.detach())
    coeff = torch.where(keep, weight * (adv - cfg.kl_tau * log_ratio), 0).detach()
    if cfg.ratio_type == "sequence":
        coeff = coeff / num_loss_tokens[segment]
    loss = -(coeff * lp).sum()

    token_kl = ratio - log_ratio - 1
    metrics = {
        "mismatch_kl": seg_mean(token_kl, mask),
        "masked_mismatch_kl": seg_mean(token_kl, mask & is_masked),
        "unmasked_mismatch_kl": seg_mean(token_kl, keep),
        "is_masked": is_masked[mask].float(),
        "is_masked_low": token_low[mask].float(),
        "is_masked_high": token_high[mask].float(),
        "sequence_masked_low": seq_low.float(),
        "sequence_masked_high": seq_high.float(),
        "geo_masked_low": geo_low.float(),
        "geo_masked_high": geo_high.float(),
        "geo_seq_ratio": geo,
    }
    if teacher_logprobs is not None:
        metrics["teacher_kl"] = seg_mean((lp - teacher_logprobs).detach(), mask)
    return loss, metrics

"""CISPO: policy gradient weighted by the clipped importance ratio under stop-gradient, so no token loses its gradient.

MiniMax, 2025, "MiniMax-M1: Scaling Test-Time Compute Efficiently with Lightning Attention" (arXiv:2506.13585):
`-sum_t sg(clip(r_t, 1 - eps_low, 1 + eps_high)) * A_t * logπ_t`. As in the paper the default
`clip_eps_low = 1.0` leaves the weight unclipped below.
"""

import torch

from prime_rl.trainer.rl.loss_types import LossInputs, LossOutputs, masked_mean


def cispo_loss(inputs: LossInputs, clip_eps_low: float = 1.0, clip_eps_high: float = 0.28) -> LossOutputs:
    mask, lp = inputs.loss_mask, inputs.trainer_logprobs
    ratio = torch.exp(lp - inputs.inference_logprobs).detach()
    weight = torch.clamp(ratio, 1 - clip_eps_low, 1 + clip_eps_high)
    loss = -(torch.where(mask, weight * inputs.advantages, 0) * lp).sum()
    clip_frac = masked_mean((ratio != weight).float(), mask)
    return LossOutputs(loss=loss, metrics={"clip_frac": clip_frac})

"""GSPO: the clipped surrogate on the length-normalised sequence ratio `s = exp(mean_t(logπ - logμ))`.

Zheng et al., 2025, "Group Sequence Policy Optimization" (arXiv:2507.18071). Deviation: to keep the
sum-not-mean contract the sequence objective is multiplied by the sequence's loss-token count, which is exactly the
token sum of GSPO-token with every token at the sequence ratio; divided by the step's loss-token count this
weighs sequences by length instead of averaging over sequences.
"""

import torch

from prime_rl.trainer.rl.loss_types import LossInputs, LossOutputs, masked_mean


def gspo_loss(inputs: LossInputs, clip_eps_low: float = 3e-4, clip_eps_high: float = 4e-4) -> LossOutputs:
    mask = inputs.loss_mask
    seq_ratio = torch.exp(masked_mean(inputs.trainer_logprobs - inputs.inference_logprobs, mask))
    clipped = torch.clamp(seq_ratio, 1 - clip_eps_low, 1 + clip_eps_high)
    advantage = masked_mean(inputs.advantages, mask)
    objective = torch.min(seq_ratio * advantage, clipped * advantage)
    loss = -mask.sum() * objective
    metrics = {"seq_ratio": seq_ratio.detach(), "clip_frac": (seq_ratio != clipped).float().detach()}
    return LossOutputs(loss=loss, metrics=metrics)

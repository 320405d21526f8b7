"""REINFORCE with an importance ratio to the inference policy: `-sum_t r_t * A_t`, gradient `-r_t * A_t * ∇logπ_t`.

Williams, 1992, "Simple statistical gradient-following algorithms for connectionist reinforcement learning". The
ratio `r_t = π/μ` corrects for sampling with the inference policy; nothing is clipped or masked.
"""

import torch

from prime_rl.trainer.rl.loss_types import LossInputs, LossOutputs, masked_mean


def reinforce_loss(inputs: LossInputs) -> LossOutputs:
    mask = inputs.loss_mask
    ratio = torch.exp(inputs.trainer_logprobs - inputs.inference_logprobs)
    loss = -torch.where(mask, ratio * inputs.advantages, 0).sum()
    return LossOutputs(loss=loss, metrics={"importance_ratio": masked_mean(ratio, mask).detach()})

"""PPO clipped surrogate, per token against the inference policy.

Schulman et al., 2017, "Proximal Policy Optimization Algorithms" (arXiv:1707.06347), eq. 7. The old policy is the
inference (sampling) policy; no value function: the advantages come from the orchestrator. Returns the sum over the
sequence's loss tokens (the framework divides by the step's loss-token count).
"""

import torch

from prime_rl.trainer.rl.loss_types import LossInputs, LossOutputs, masked_mean


def ppo_clip_loss(inputs: LossInputs, clip_eps: float = 0.2) -> LossOutputs:
    mask = inputs.loss_mask
    ratio = torch.exp(inputs.trainer_logprobs - inputs.inference_logprobs)
    clipped = torch.clamp(ratio, 1 - clip_eps, 1 + clip_eps)
    objective = torch.min(ratio * inputs.advantages, clipped * inputs.advantages)
    loss = -torch.where(mask, objective, 0).sum()
    clip_frac = masked_mean((ratio != clipped).float(), mask)
    return LossOutputs(loss=loss, metrics={"clip_frac": clip_frac.detach()})

"""The SFT loss on the RL loss contract: negative log-likelihood of the loss-mask (assistant) tokens.

Summed per sequence like every loss; the shared step divides by the step's loss tokens, which makes it the token-mean
cross-entropy over the whole step, independent of how the conversations were packed.
"""

from __future__ import annotations

from prime_rl.trainer.rl.loss import Loss, LossInputs, LossOutputs


def nll_loss(inputs: LossInputs) -> LossOutputs:
    return LossOutputs(loss=-inputs.trainer_logprobs[inputs.loss_mask].sum(), metrics={})


def packed_nll_loss(inputs: LossInputs, seq_lens: list[int]) -> LossOutputs:
    """A sum over every loss token, so the packed micro-batch needs no splitting."""
    return nll_loss(inputs)


SFT_LOSS = Loss(per_sequence=nll_loss, packed=packed_nll_loss)

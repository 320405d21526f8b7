"""Built-in losses on the seed's contract `fn(inputs: LossInputs, **kwargs) -> LossOutputs`, chosen by `[loss] type`."""

from prime_rl.trainer.rl.losses.cispo import cispo_loss
from prime_rl.trainer.rl.losses.gspo import gspo_loss
from prime_rl.trainer.rl.losses.ppo_clip import ppo_clip_loss
from prime_rl.trainer.rl.losses.reinforce import reinforce_loss

LOSS_FUNCTIONS = {
    "ppo_clip": ppo_clip_loss,
    "gspo": gspo_loss,
    "cispo": cispo_loss,
    "reinforce": reinforce_loss,
}

__all__ = ["LOSS_FUNCTIONS", "cispo_loss", "gspo_loss", "ppo_clip_loss", "reinforce_loss"]

"""Built-in advantages on the seed's contract: `fn(inputs: AdvantageInputs, **kwargs) -> AdvantageOutputs`."""

from prime_rl.orchestrator.advantages.grpo import grpo_advantage
from prime_rl.orchestrator.advantages.rloo import rloo_advantage

ADVANTAGE_FUNCTIONS = {"grpo": grpo_advantage, "rloo": rloo_advantage}

__all__ = ["ADVANTAGE_FUNCTIONS", "grpo_advantage", "rloo_advantage"]

"""GRPO advantage: `(r - mean(group)) / (std(group) + eps)`, with the unbiased (n - 1) standard deviation.

Shao et al., 2024, "DeepSeekMath: Pushing the Limits of Mathematical Reasoning in Open Language Models"
(arXiv:2402.03300), section 4.1.2 (outcome supervision). Needs at least 2 rollouts per example.
"""

from prime_rl.orchestrator.advantage_types import AdvantageInputs, AdvantageOutputs


def grpo_advantage(inputs: AdvantageInputs, eps: float = 1e-6) -> AdvantageOutputs:
    rewards = inputs.rewards
    if rewards.shape[1] < 2:
        raise ValueError(f"grpo advantage needs at least 2 rollouts per example, got {rewards.shape[1]}")
    mean = rewards.mean(dim=1, keepdim=True)
    std = rewards.std(dim=1, keepdim=True)
    return AdvantageOutputs(advantages=(rewards - mean) / (std + eps))

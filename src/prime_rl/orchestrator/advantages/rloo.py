"""RLOO advantage: each rollout's baseline is the mean reward of the other rollouts of its group.

Ahmadian et al., 2024, "Back to Basics: Revisiting REINFORCE Style Optimization for Learning from Human Feedback in
LLMs" (arXiv:2402.14740). Equals `G / (G - 1) * (r - mean(group))`; needs at least 2 rollouts per example.
"""

from prime_rl.orchestrator.advantage_types import AdvantageInputs, AdvantageOutputs


def rloo_advantage(inputs: AdvantageInputs) -> AdvantageOutputs:
    rewards = inputs.rewards
    group = rewards.shape[1]
    if group < 2:
        raise ValueError(f"rloo advantage needs at least 2 rollouts per example, got {group}")
    baseline = (rewards.sum(dim=1, keepdim=True) - rewards) / (group - 1)
    return AdvantageOutputs(advantages=rewards - baseline)

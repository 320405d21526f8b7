"""Built-in advantages (`grpo`, `rloo`) pinned on hand-computed values, selected through the config."""

from __future__ import annotations

import pytest
import torch

from prime_rl.orchestrator.advantage import AdvantageInputs
from prime_rl.orchestrator.advantages import grpo_advantage, rloo_advantage
from prime_rl.orchestrator.batch_advantages import compute_advantages
from prime_rl.orchestrator.config import GRPOAdvantageConfig, RLOOAdvantageConfig


def inputs(rewards) -> AdvantageInputs:
    rewards = torch.tensor(rewards, dtype=torch.float64)
    return AdvantageInputs(rewards=rewards, completion_lengths=torch.ones_like(rewards, dtype=torch.long))


def test_grpo_divides_by_the_unbiased_group_std():
    adv = grpo_advantage(inputs([[1.0, 0.0, 0.5], [2.0, 2.0, 2.0]]), eps=1e-6).advantages
    assert adv[0].tolist() == pytest.approx([0.5 / (0.5 + 1e-6), -0.5 / (0.5 + 1e-6), 0.0])
    assert adv[1].tolist() == [0.0, 0.0, 0.0]  # equal rewards: zero, not NaN


def test_rloo_leaves_one_out():
    adv = rloo_advantage(inputs([[1.0, 0.0, 0.5], [3.0, 1.0, 2.0]])).advantages
    assert adv[0].tolist() == pytest.approx([1 - 0.25, 0 - 0.75, 0.5 - 0.5])
    assert adv[1].tolist() == pytest.approx([3 - 1.5, 1 - 2.5, 2 - 2.0])


@pytest.mark.parametrize("fn", [grpo_advantage, rloo_advantage])
def test_need_two_rollouts_per_example(fn):
    with pytest.raises(ValueError, match="needs at least 2 rollouts per example, got 1"):
        fn(inputs([[1.0], [0.0]]))


def test_compute_advantages_with_library_configs():
    rewards, lengths = [1.0, 0.0, 0.5, 3.0, 1.0, 2.0], [5] * 6
    assert compute_advantages(rewards, lengths, 3, RLOOAdvantageConfig()) == pytest.approx(
        [0.75, -0.75, 0.0, 1.5, -1.5, 0.0]
    )
    grpo = compute_advantages(rewards, lengths, 3, GRPOAdvantageConfig(eps=0.0))
    assert grpo == pytest.approx([1.0, -1.0, 0.0, 1.0, -1.0, 0.0])

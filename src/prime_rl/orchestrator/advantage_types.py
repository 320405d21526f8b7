"""The advantage plug-in contract (architecture.md §4): complete groups of rewards in, one advantage per rollout out.

Kept apart from `advantage.py` so the built-in advantages (`advantages/*`) import the contract without the dispatcher.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from jaxtyping import Float, Int
from torch import Tensor


@dataclass
class AdvantageInputs:
    """Rewards and completion lengths of complete groups; row = one example, column = one of its rollouts."""

    rewards: Float[Tensor, "num_examples rollouts_per_example"]
    completion_lengths: Int[Tensor, "num_examples rollouts_per_example"]


@dataclass
class AdvantageOutputs:
    """One advantage per rollout, broadcast by the orchestrator to all of its completion tokens."""

    advantages: Float[Tensor, "num_examples rollouts_per_example"]


AdvantageFn = Callable[[AdvantageInputs], AdvantageOutputs]
"""A configured advantage: `advantage_fn(inputs: AdvantageInputs) -> AdvantageOutputs` (kwargs already bound)."""

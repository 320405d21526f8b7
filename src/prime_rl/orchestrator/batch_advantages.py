"""`compute_advantages` over a flat batch of groups. The built-in advantages (default, `grpo`, `rloo`) run here on
plain floats, group by group, so the orchestrator never imports torch (~0.19 GiB resident) for them; a custom
advantage, or a built-in whose result is not finite or whose group is too small, goes through the tensor contract
of `advantage.py`, which then raises its usual errors. Both paths agree to float64 rounding."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from prime_rl.orchestrator.config import AdvantageConfig, GRPOAdvantageConfig, RLOOAdvantageConfig

GroupFn = Callable[[list[float], list[int]], list[float]]
"""One group's rewards and completion lengths -> its advantages."""


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


def default_group(rewards: list[float], lengths: list[int], length_weighted_mean: bool = False) -> list[float]:
    """`default_advantage_fn` on one group."""
    if length_weighted_mean:
        baseline = sum(r * n for r, n in zip(rewards, lengths, strict=True)) / max(sum(lengths), 1)
    else:
        baseline = _mean(rewards)
    return [r - baseline for r in rewards]


def grpo_group(rewards: list[float], lengths: list[int], eps: float = 1e-6) -> list[float]:
    """`grpo_advantage` on one group of at least 2 rollouts."""
    mean = _mean(rewards)
    std = math.sqrt(sum((r - mean) ** 2 for r in rewards) / (len(rewards) - 1))
    return [(r - mean) / (std + eps) for r in rewards]


def rloo_group(rewards: list[float], lengths: list[int]) -> list[float]:
    """`rloo_advantage` on one group of at least 2 rollouts."""
    total = sum(rewards)
    return [r - (total - r) / (len(rewards) - 1) for r in rewards]


def plain_group_fn(config: Any, group_size: int) -> GroupFn | None:
    """The plain-float form of a built-in advantage config; None for a custom one or a group too small for it."""
    if isinstance(config, AdvantageConfig):
        return lambda r, n: default_group(r, n, config.length_weighted_mean)
    if isinstance(config, GRPOAdvantageConfig) and group_size >= 2:
        return lambda r, n: grpo_group(r, n, config.eps)
    if isinstance(config, RLOOAdvantageConfig) and group_size >= 2:
        return rloo_group
    return None


def plain_advantages(rewards: list[float], lengths: list[int], group_size: int, config: Any) -> list[float] | None:
    """Advantages of complete groups by the plain form of `config`; None when it has none or a result is not finite."""
    fn = plain_group_fn(config, group_size)
    if fn is None:
        return None
    out: list[float] = []
    try:
        for i in range(0, len(rewards), group_size):
            out += fn(rewards[i : i + group_size], lengths[i : i + group_size])
    except ZeroDivisionError:  # e.g. grpo with eps 0 on equal rewards: the tensor path reports the NaN
        return None
    return out if all(math.isfinite(a) for a in out) else None


def compute_advantages(
    rewards: list[float],
    completion_lengths: list[int],
    samples_per_problem: int,
    advantage_config: Any,
) -> list[float]:
    """Advantages of a flat list of complete groups (`samples_per_problem` consecutive rollouts per example)."""
    if len(rewards) != len(completion_lengths):
        raise ValueError(f"{len(rewards)} rewards but {len(completion_lengths)} completion lengths")
    if samples_per_problem <= 0 or len(rewards) % samples_per_problem:
        raise ValueError(
            f"{len(rewards)} rewards do not split into groups of samples_per_problem={samples_per_problem}"
        )
    plain = plain_advantages(rewards, completion_lengths, samples_per_problem, advantage_config)
    if plain is not None:
        return plain
    from prime_rl.orchestrator.advantage import tensor_advantages  # imports torch: only on this path

    return tensor_advantages(rewards, completion_lengths, samples_per_problem, advantage_config)

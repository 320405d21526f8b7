"""The advantage plug-in contract (groups in, one advantage per rollout out), the default, and its entry point."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import torch
from jaxtyping import Float, Int
from torch import Tensor

from prime_rl.orchestrator.config import AdvantageConfig, AdvantageConfigType, CustomAdvantageConfig
from prime_rl.utils.config import bind_kwargs, import_object


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


def default_advantage_fn(inputs: AdvantageInputs, length_weighted_mean: bool = False) -> AdvantageOutputs:
    """Reward minus the group's mean reward (Dr. GRPO, Liu et al., 2025: no std normalisation).

    With `length_weighted_mean`, the baseline is `sum(r * L) / sum(L)` over the group.
    """
    rewards = inputs.rewards
    if length_weighted_mean:
        lengths = inputs.completion_lengths.to(rewards.dtype)
        baseline = (rewards * lengths).sum(dim=1, keepdim=True) / lengths.sum(dim=1, keepdim=True).clamp_min(1)
    else:
        baseline = rewards.mean(dim=1, keepdim=True)
    return AdvantageOutputs(advantages=rewards - baseline)


def check_advantage_outputs(out: object, inputs: AdvantageInputs, name: str) -> AdvantageOutputs:
    """Validates what an advantage function returned; raises TypeError/ValueError naming the function."""
    if not isinstance(out, AdvantageOutputs):
        raise TypeError(f"advantage function `{name}` returned {type(out).__name__}, expected AdvantageOutputs")
    adv = out.advantages
    if not isinstance(adv, Tensor):
        raise TypeError(
            f"advantage function `{name}` returned advantages of type {type(adv).__name__}, expected Tensor"
        )
    if adv.shape != inputs.rewards.shape:
        raise ValueError(
            f"advantage function `{name}` returned advantages of shape {tuple(adv.shape)}, "
            f"expected {tuple(inputs.rewards.shape)} (num_examples, rollouts_per_example)"
        )
    if not torch.isfinite(adv).all():
        bad = (~torch.isfinite(adv)).nonzero()[0].tolist()
        raise ValueError(
            f"advantage function `{name}` returned a non-finite advantage {adv[tuple(bad)].item()} at {bad}"
        )
    return out


def _checked(fn: Callable[..., AdvantageOutputs], name: str, kwargs: dict) -> AdvantageFn:
    def advantage_fn(inputs: AdvantageInputs) -> AdvantageOutputs:
        return check_advantage_outputs(fn(inputs, **kwargs), inputs, name)

    advantage_fn.__qualname__ = name
    return advantage_fn


def rewards_as_advantages(inputs: AdvantageInputs) -> AdvantageOutputs:
    """No baseline: the advantage of a rollout is its reward (what `advantage_config = None` means)."""
    return AdvantageOutputs(advantages=inputs.rewards.clone())


def setup_advantage_fn(config: AdvantageConfigType | None) -> AdvantageFn:
    """The configured advantage with its kwargs bound; a custom `import_path` is imported and checked here."""
    if config is None:
        return rewards_as_advantages
    if isinstance(config, AdvantageConfig):
        return functools.partial(default_advantage_fn, length_weighted_mean=config.length_weighted_mean)
    if isinstance(config, CustomAdvantageConfig):
        fn = import_object(config.import_path, "function")
        bind_kwargs(fn, config.import_path, config.kwargs)
        return _checked(fn, config.import_path, dict(config.kwargs))
    from prime_rl.orchestrator.advantages import ADVANTAGE_FUNCTIONS

    fn = ADVANTAGE_FUNCTIONS[config.type]
    return _checked(fn, f"{fn.__module__}.{fn.__qualname__}", config.model_dump(exclude={"type"}))


def compute_advantages(
    rewards: list[float],
    completion_lengths: list[int],
    samples_per_problem: int,
    advantage_config: AdvantageConfigType | None,
) -> list[float]:
    """Advantages of a flat list of complete groups (`samples_per_problem` consecutive rollouts per example).

    `advantage_config=None` returns the rewards unchanged.
    """
    if len(rewards) != len(completion_lengths):
        raise ValueError(f"{len(rewards)} rewards but {len(completion_lengths)} completion lengths")
    if samples_per_problem <= 0 or len(rewards) % samples_per_problem:
        raise ValueError(
            f"{len(rewards)} rewards do not split into groups of samples_per_problem={samples_per_problem}"
        )
    if advantage_config is None:
        return list(rewards)
    inputs = AdvantageInputs(
        rewards=torch.tensor(rewards, dtype=torch.float64).view(-1, samples_per_problem),
        completion_lengths=torch.tensor(completion_lengths, dtype=torch.long).view(-1, samples_per_problem),
    )
    out = setup_advantage_fn(advantage_config)(inputs)
    return out.advantages.reshape(-1).tolist()

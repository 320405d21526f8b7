"""The configured advantage (`setup_advantage_fn`), the default, and the tensor path of `compute_advantages`.

The contract types live in `advantage_types.py` and are re-exported here (the seed's import path);
`compute_advantages` lives in `batch_advantages.py` (the built-ins without torch), which calls back into this module
only for the tensor path.
"""

from __future__ import annotations

import functools

import torch
from torch import Tensor

from prime_rl.orchestrator.advantage_types import AdvantageFn, AdvantageInputs, AdvantageOutputs
from prime_rl.orchestrator.advantages import ADVANTAGE_FUNCTIONS
from prime_rl.orchestrator.config import AdvantageConfig, AdvantageConfigType, CustomAdvantageConfig
from prime_rl.utils.plugins import checked

__all__ = [
    "AdvantageFn",
    "AdvantageInputs",
    "AdvantageOutputs",
    "default_advantage_fn",
    "setup_advantage_fn",
]


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


def setup_advantage_fn(config: AdvantageConfigType) -> AdvantageFn:
    """The configured advantage with its kwargs bound; a custom `import_path` is imported and checked here."""
    if isinstance(config, AdvantageConfig):
        return functools.partial(default_advantage_fn, length_weighted_mean=config.length_weighted_mean)
    if isinstance(config, CustomAdvantageConfig):
        return config.load_plugin(check_advantage_outputs)
    fn = ADVANTAGE_FUNCTIONS[config.type]
    name = f"{fn.__module__}.{fn.__qualname__}"
    return checked(fn, name, config.model_dump(exclude={"type"}), check_advantage_outputs)


def tensor_advantages(
    rewards: list[float], completion_lengths: list[int], samples_per_problem: int, advantage_config: AdvantageConfigType
) -> list[float]:
    """`compute_advantages` through the tensor contract: the configured function on `[groups, samples_per_problem]`
    float64 rewards and int64 lengths (inputs already checked)."""
    inputs = AdvantageInputs(
        rewards=torch.tensor(rewards, dtype=torch.float64).view(-1, samples_per_problem),
        completion_lengths=torch.tensor(completion_lengths, dtype=torch.long).view(-1, samples_per_problem),
    )
    out = setup_advantage_fn(advantage_config)(inputs)
    return out.advantages.reshape(-1).tolist()

"""Complete groups of scored rollouts → advantages → the training batch of one step (architecture.md §4, §5).

Groups arrive as a list in the order the buffer sampled their examples; that order (never arrival order) is the row
order of the `[num_examples, rollouts_per_example]` reward tensor given to the advantage function.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from prime_rl.environments.types import Example, Rollout
from prime_rl.orchestrator.batch_advantages import compute_advantages
from prime_rl.orchestrator.trajectories import SampleParts, rollout_to_samples
from prime_rl.transport.types import TrainingBatch, TrainingSample


@dataclass
class Group:
    """All rollouts of one example in one step."""

    env_name: str
    example: Example
    rollouts: list[Rollout]


@dataclass
class BatchStats:
    """What assembly decided, for the step metrics."""

    advantages_E_G: list[list[float]] = field(default_factory=list)
    dropped_groups: int = 0
    dropped_samples: int = 0
    truncated_samples: int = 0


def baseline_rewards(rollouts: list[Rollout]) -> list[float]:
    """Rewards as seen by the advantage function: an errored rollout (masked out of the loss anyway) takes the mean
    reward of the group's successful rollouts, so an infrastructure failure does not move its siblings' baseline."""
    ok = [r.reward for r in rollouts if r.error is None]
    fill = sum(ok) / len(ok) if ok else 0.0
    return [r.reward if r.error is None else fill for r in rollouts]


def _fit(parts: SampleParts, seq_len: int) -> SampleParts | None:
    """Cuts the completion so that prompt + completion fit in `seq_len`; None when the prompt alone does not."""
    room = seq_len - len(parts.prompt_ids)
    if room <= 0:
        return None
    if len(parts.completion_ids) > room:
        parts.completion_ids = parts.completion_ids[:room]
        parts.completion_mask = parts.completion_mask[:room]
        parts.completion_logprobs = parts.completion_logprobs[:room]
        parts.completion_temperatures = parts.completion_temperatures[:room]
    return parts


def _to_sample(parts: SampleParts, advantage: float, rollout: Rollout) -> TrainingSample:
    return TrainingSample(
        prompt_ids=parts.prompt_ids,
        completion_ids=parts.completion_ids,
        completion_mask=parts.completion_mask,
        completion_logprobs=parts.completion_logprobs,
        completion_temperatures=parts.completion_temperatures,
        advantage=advantage,
        reward=rollout.reward,
        policy_step=parts.policy_step,
        example_id=rollout.example_id,
        env_name=rollout.env_name,
    )


def assemble_batch(
    step: int,
    groups: list[Group],
    advantage_config: Any,
    seq_len: int,
    filter_zero_variance: bool = False,
) -> tuple[TrainingBatch, BatchStats]:
    """Advantages on the complete groups (in list order), optional zero-variance filtering, samples cut to `seq_len`."""
    sizes = {len(g.rollouts) for g in groups}
    if len(sizes) > 1:
        raise ValueError(f"step {step}: groups of different sizes {sorted(sizes)}; advantages need complete groups")
    rollouts_per_example = sizes.pop() if sizes else 1
    parts_E_G = [[rollout_to_samples(r) for r in g.rollouts] for g in groups]
    rewards = [reward for g in groups for reward in baseline_rewards(g.rollouts)]
    lengths = [r.completion_length for g in groups for r in g.rollouts]
    flat = compute_advantages(rewards, lengths, rollouts_per_example, advantage_config) if groups else []
    n = rollouts_per_example
    stats = BatchStats(advantages_E_G=[flat[i : i + n] for i in range(0, len(flat), n)])
    samples: list[TrainingSample] = []
    for group, parts_G, advantages_G in zip(groups, parts_E_G, stats.advantages_E_G, strict=True):
        if filter_zero_variance and max(advantages_G) - min(advantages_G) < 1e-8:
            stats.dropped_groups += 1
            continue
        for rollout, parts, advantage in zip(group.rollouts, parts_G, advantages_G, strict=True):
            for part in parts:
                longer = len(part.prompt_ids) + len(part.completion_ids) > seq_len
                fitted = _fit(part, seq_len)
                if fitted is None:
                    stats.dropped_samples += 1
                    continue
                stats.truncated_samples += longer
                samples.append(_to_sample(fitted, advantage, rollout))
    return TrainingBatch(step=step, samples=samples), stats

"""Rollout → training samples (architecture.md §5, "Multi-turn").

Consecutive turns whose prompt extends the previous prompt + completion exactly are interleaved into one sample:
the environment tokens between two model turns join the completion with mask False and logprob 0. A turn whose
prompt does not extend the previous tokens (e.g. a chat template that rewrites history) starts a new sample, so
the trainer never sees a context the model did not see. A rollout whose turns all extend becomes one sample; one
where none do becomes one sample per turn. An errored rollout keeps its tokens but every mask is False.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from prime_rl.environments.types import Rollout, Turn
from prime_rl.utils.logger import get_logger


@dataclass
class SampleParts:
    """The token-level part of a training sample; the orchestrator adds advantage and reward."""

    prompt_ids: list[int]
    completion_ids: list[int] = field(default_factory=list)
    completion_mask: list[bool] = field(default_factory=list)
    completion_logprobs: list[float] = field(default_factory=list)
    completion_temperatures: list[float] = field(default_factory=list)
    policy_step: int = 0
    """Oldest policy that generated any of the completion tokens (min over the turns used)."""


def _extends(turn: Turn, sample: SampleParts) -> bool:
    prefix_len = len(sample.prompt_ids) + len(sample.completion_ids)
    return (
        len(turn.prompt_ids) >= prefix_len
        and turn.prompt_ids[: len(sample.prompt_ids)] == sample.prompt_ids
        and turn.prompt_ids[len(sample.prompt_ids) : prefix_len] == sample.completion_ids
    )


def _append_turn(sample: SampleParts, turn: Turn) -> None:
    env_ids = turn.prompt_ids[len(sample.prompt_ids) + len(sample.completion_ids) :]
    sample.completion_ids += env_ids + turn.completion_ids
    sample.completion_mask += [False] * len(env_ids) + list(turn.completion_mask)
    sample.completion_logprobs += [0.0] * len(env_ids) + list(turn.completion_logprobs)
    sample.completion_temperatures += [turn.temperature] * (len(env_ids) + len(turn.completion_ids))
    sample.policy_step = min(sample.policy_step, turn.policy_step)


def _check_turn(turn: Turn, rollout: Rollout, index: int) -> None:
    n = len(turn.completion_ids)
    if len(turn.completion_logprobs) != n or len(turn.completion_mask) != n:
        raise ValueError(
            f"rollout of example {rollout.example_id} ({rollout.env_name}) turn {index}: {n} completion ids, "
            f"{len(turn.completion_logprobs)} logprobs, {len(turn.completion_mask)} mask entries"
        )


def rollout_to_samples(rollout: Rollout) -> list[SampleParts]:
    """Interleaves the rollout's turns into as few samples as exact token prefixes allow (see module docstring)."""
    samples: list[SampleParts] = []
    for index, turn in enumerate(rollout.turns):
        _check_turn(turn, rollout, index)
        if not samples or not _extends(turn, samples[-1]):
            if samples:
                get_logger("orchestrator").debug(
                    "example %d (%s): turn %d does not extend the previous tokens, new sample",
                    rollout.example_id,
                    rollout.env_name,
                    index,
                )
            samples.append(SampleParts(prompt_ids=list(turn.prompt_ids), policy_step=turn.policy_step))
        _append_turn(samples[-1], turn)
    if rollout.error is not None:
        for sample in samples:
            sample.completion_mask = [False] * len(sample.completion_ids)
    return samples

"""Generation of one step: the groups run concurrently (each through its environment's `run_group`) under a
concurrency limit counted in rollouts. Groups keep the order in which the buffer sampled their examples."""

from __future__ import annotations

import asyncio
import functools
import time
from dataclasses import dataclass

from prime_rl.environments.base import Environment, Example, SamplingArgs
from prime_rl.environments.client import SamplingClient
from prime_rl.orchestrator.batch import Group


@dataclass
class Generation:
    """The groups of one step and where the time went."""

    groups: list[Group]
    wall_s: float
    """Wall-clock seconds from the first request to the last scored rollout."""
    score_s: float
    """Seconds spent scoring (reward functions), summed over rollouts."""
    tokens: int
    """Completion tokens sampled by the model."""


class ScoreTimer:
    """Accumulates the time environments spend in `score` (wraps the bound method of each environment once)."""

    def __init__(self, envs: dict[str, Environment]):
        self.seconds = 0.0
        for env in envs.values():
            env.score = self._timed(env.score)

    def _timed(self, score):
        @functools.wraps(score)
        async def timed(*args, **kwargs):
            start = time.perf_counter()
            try:
                return await score(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - start

        return timed

    def take(self) -> float:
        seconds, self.seconds = self.seconds, 0.0
        return seconds


async def generate_groups(
    envs: dict[str, Environment],
    client: SamplingClient,
    examples: list[tuple[str, Example]],
    group_size: int,
    sampling: SamplingArgs,
    max_concurrent: int,
    timer: ScoreTimer | None = None,
) -> Generation:
    """`group_size` scored rollouts of each `(env_name, example)`; at most `max_concurrent` rollouts in flight
    (at least one whole group)."""
    limit = asyncio.Semaphore(max(1, max_concurrent // group_size))

    async def run(name: str, example: Example) -> Group:
        async with limit:
            rollouts = await envs[name].run_group(client, example, sampling, group_size)
        if len(rollouts) != group_size:
            raise RuntimeError(f"environment `{name}` returned {len(rollouts)} rollouts for a group of {group_size}")
        for rollout in rollouts:
            rollout.env_name = name
        return Group(env_name=name, example=example, rollouts=rollouts)

    start = time.perf_counter()
    groups = list(await asyncio.gather(*(run(name, example) for name, example in examples)))
    return Generation(
        groups=groups,
        wall_s=time.perf_counter() - start,
        score_s=timer.take() if timer is not None else 0.0,
        tokens=sum(sum(t.completion_mask) for g in groups for r in g.rollouts for t in r.turns),
    )

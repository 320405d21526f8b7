"""Generation of one step: the groups run concurrently (each through its environment's `run_group`) under a
concurrency limit counted in rollouts. Groups keep the order in which the buffer sampled their examples.

Seeded requests: every group (and, for environments that run a group as `n` separate episodes, every rollout) gets
its own seed derived from `(seed, step, group, rollout)`, so a resumed step asks for the same random streams and
no two rollouts of a group share one.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import time
from dataclasses import dataclass

from prime_rl.client import InferenceClient
from prime_rl.environments.base import Environment
from prime_rl.environments.types import Example, Rollout, SamplingConfig
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
    """Completion tokens sampled by the model (`Rollout.completion_length` summed)."""

    def merged(self, other: Generation) -> Generation:
        """This generation followed by `other` (a later round of the same step): groups appended, times summed."""
        return Generation(
            self.groups + other.groups,
            self.wall_s + other.wall_s,
            self.score_s + other.score_s,
            self.tokens + other.tokens,
        )


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


def request_seed(seed: int, step: int, group: int, rollout: int = -1) -> int:
    """A 63-bit seed, a fixed function of its arguments (stable across processes, unlike `hash`)."""
    digest = hashlib.sha256(f"{seed}/{step}/{group}/{rollout}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


async def run_seeded_group(
    env: Environment, client: InferenceClient, example: Example, sampling: SamplingConfig, n: int, seeds: list[int]
) -> list[Rollout]:
    """`env.run_group` with `seeds[0]` when the environment overrides it (one request, the server draws a stream
    per choice); otherwise the `n` episodes of the base `run_group`, each with its own seed from `seeds[1:]`."""
    if type(env).run_group is not Environment.run_group:
        return await env.run_group(client, example, sampling, n, seed=seeds[0])
    return list(await asyncio.gather(*(env.run(client, example, sampling, s) for s in seeds[1 : n + 1])))


async def generate_groups(
    envs: dict[str, Environment],
    client: InferenceClient,
    examples: list[tuple[str, Example]],
    rollouts_per_example: int,
    sampling: SamplingConfig,
    max_concurrent: int,
    timer: ScoreTimer | None = None,
    seed: int | None = None,
    step: int = 0,
    first_group: int = 0,
) -> Generation:
    """`rollouts_per_example` scored rollouts of each `(env_name, example)`; at most `max_concurrent` rollouts in
    flight (at least one whole group). With a `seed`, requests carry seeds from `(seed, step, group, rollout)`, the
    groups numbered from `first_group` (a refill round continues the numbering of its step)."""
    n = rollouts_per_example
    limit = asyncio.Semaphore(max(1, max_concurrent // n))

    async def run(index: int, name: str, example: Example) -> Group:
        async with limit:
            if seed is None:
                rollouts = await envs[name].run_group(client, example, sampling, n)
            else:
                seeds = [request_seed(seed, step, first_group + index, r) for r in range(-1, n)]
                rollouts = await run_seeded_group(envs[name], client, example, sampling, n, seeds)
        if len(rollouts) != n:
            raise RuntimeError(f"environment `{name}` returned {len(rollouts)} rollouts for a group of {n}")
        for rollout in rollouts:
            rollout.env_name = name
        return Group(env_name=name, example=example, rollouts=rollouts)

    start = time.perf_counter()
    groups = list(await asyncio.gather(*(run(i, name, example) for i, (name, example) in enumerate(examples))))
    return Generation(
        groups=groups,
        wall_s=time.perf_counter() - start,
        score_s=timer.take() if timer is not None else 0.0,
        tokens=sum(r.completion_length for g in groups for r in g.rollouts),
    )

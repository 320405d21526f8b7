"""The environment contract (architecture.md §7): examples in, scored rollouts out.

An environment owns a dataset of `Example`s, a `rollout` that talks to the inference server through the
`InferenceClient` it is given, and a `Rubric` of reward functions. `run` wraps both and never raises for a failing
rollout or reward function: the rollout is marked errored (reward 0) and the orchestrator masks it out of the loss.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any

from prime_rl.environments.rubric import RewardError, Rubric, describe_exception
from prime_rl.environments.types import Example, Rollout, SamplingConfig
from prime_rl.utils.logger import get_logger

if TYPE_CHECKING:
    from prime_rl.client import InferenceClient


def errored_rollout(env_name: str, example: Example, error: str) -> Rollout:
    """A rollout with no turns, used when generation failed before any turn completed."""
    return Rollout(example.example_id, env_name, example.prompt, [], [], error=error)


class Environment(ABC):
    """Base class of every environment. Subclasses set `name` and `rubric` and implement the three abstract methods."""

    name: str = "environment"
    rubric: Rubric

    def setup(self, tokenizer: Any) -> None:
        """Gives the environment the policy's tokenizer (multi-turn environments render environment tokens with it)."""
        self.tokenizer = tokenizer

    @abstractmethod
    def dataset(self) -> list[Example]:
        """The training split: unique integer `example_id`s, identical across calls (seeded)."""

    @abstractmethod
    def eval_dataset(self) -> list[Example]:
        """The evaluation split, disjoint from the training split where the task allows."""

    async def close(self) -> None:
        """Releases what rollouts started (a verifiers environment's interception server); called once at the end."""
        return None

    def reference_completion(self, example: Example) -> list[dict] | None:
        """The ideal reply to `example` as chat messages (SFT warm-up on reference answers); None if there is none."""
        return None

    @abstractmethod
    async def rollout(
        self, client: InferenceClient, example: Example, sampling: SamplingConfig, seed: int | None = None
    ) -> Rollout:
        """Generates one episode for `example` (no scoring), passing `sampling` and `seed` to every request; may
        raise, `run` turns that into an errored rollout."""

    async def run(
        self, client: InferenceClient, example: Example, sampling: SamplingConfig, seed: int | None = None
    ) -> Rollout:
        """Rollout + scoring. Never raises for rollout or reward errors: sets `rollout.error` and reward 0 instead."""
        try:
            rollout = await self.rollout(client, example, sampling, seed)
        except Exception as e:
            rollout = errored_rollout(self.name, example, f"rollout failed: {describe_exception(e)}")
            get_logger("environments").warning("%s example %d: %s", self.name, example.example_id, rollout.error)
            return rollout
        return await self.score(rollout, example)

    async def run_group(
        self, client: InferenceClient, example: Example, sampling: SamplingConfig, n: int, seed: int | None = None
    ) -> list[Rollout]:
        """`n` independent scored rollouts of the same example, generated concurrently, every one with `seed` (the
        orchestrator seeds the episodes one by one through `run` instead)."""
        return list(await asyncio.gather(*(self.run(client, example, sampling, seed) for _ in range(n))))

    async def score(self, rollout: Rollout, example: Example) -> Rollout:
        """Fills `reward` and `metrics` from the rubric; a raising reward function marks the rollout errored."""
        if rollout.error is not None:
            rollout.reward = 0.0
            return rollout
        try:
            rollout.reward, rollout.metrics = await self.rubric.score(rollout, example)
        except RewardError as e:
            rollout.reward, rollout.error = 0.0, str(e)
            get_logger("environments").warning("%s example %d: %s", self.name, example.example_id, e)
        return rollout

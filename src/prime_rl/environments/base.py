"""The environment contract (DESIGN.md section 7): examples in, scored rollouts out.

An environment owns a dataset of `Example`s, a `rollout` that talks to the inference server through a
`SamplingClient`, and a `Rubric` of reward functions. `run` wraps both and never raises for a failing rollout
or reward function: the rollout is marked errored (reward 0) and the orchestrator masks it out of the loss.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from prime_rl.environments.rubric import RewardError, Rubric, describe_exception
from prime_rl.utils.logger import get_logger

if TYPE_CHECKING:
    from prime_rl.environments.client import SamplingClient


@dataclass
class Example:
    """One dataset row: a chat prompt and what the rubric needs to score a completion of it."""

    example_id: int
    prompt: list[dict]
    answer: str = ""
    info: dict = field(default_factory=dict)


@dataclass
class SamplingArgs:
    """Sampling parameters sent with every request (`top_k = -1` and `min_p = 0` disable those filters)."""

    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = -1
    min_p: float = 0.0
    max_tokens: int = 128
    min_tokens: int = 0
    stop: list[str] | None = None
    seed: int | None = None


@dataclass
class Turn:
    """One model call of a rollout, with the exact tokens the model saw and sampled."""

    prompt_ids: list[int]
    completion_ids: list[int]
    completion_logprobs: list[float]
    completion_mask: list[bool]
    temperature: float
    policy_step: int
    finish_reason: str


@dataclass
class Rollout:
    """A finished (possibly multi-turn) episode; `error` is set when generation or scoring failed."""

    example_id: int
    env_name: str
    prompt: list[dict]
    completion: list[dict]
    turns: list[Turn]
    reward: float = 0.0
    metrics: dict[str, float] = field(default_factory=dict)
    is_truncated: bool = False
    error: str | None = None


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

    def reference_completion(self, example: Example) -> list[dict] | None:
        """The ideal reply to `example` as chat messages (SFT warm-up on reference answers); None if there is none."""
        return None

    @abstractmethod
    async def rollout(self, client: SamplingClient, example: Example, sampling: SamplingArgs) -> Rollout:
        """Generates one episode for `example` (no scoring); may raise, `run` turns that into an errored rollout."""

    async def run(self, client: SamplingClient, example: Example, sampling: SamplingArgs) -> Rollout:
        """Rollout + scoring. Never raises for rollout or reward errors: sets `rollout.error` and reward 0 instead."""
        try:
            rollout = await self.rollout(client, example, sampling)
        except Exception as e:
            rollout = errored_rollout(self.name, example, f"rollout failed: {describe_exception(e)}")
            get_logger("environments").warning("%s example %d: %s", self.name, example.example_id, rollout.error)
            return rollout
        return await self.score(rollout, example)

    async def run_group(
        self, client: SamplingClient, example: Example, sampling: SamplingArgs, n: int
    ) -> list[Rollout]:
        """`n` independent scored rollouts of the same example, generated concurrently."""
        return list(await asyncio.gather(*(self.run(client, example, sampling) for _ in range(n))))

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

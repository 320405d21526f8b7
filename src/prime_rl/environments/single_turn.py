"""Single-turn environment: one model reply to the example's prompt, scored by a rubric."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from prime_rl.environments.base import Environment, errored_rollout
from prime_rl.environments.rubric import Rubric, describe_exception
from prime_rl.environments.types import Example, Rollout, SamplingConfig, Turn
from prime_rl.utils.logger import get_logger

if TYPE_CHECKING:
    from prime_rl.client import Completion, InferenceClient


def completion_turn(completion: Completion, sampling: SamplingConfig) -> Turn:
    """The `Turn` record of one sampled completion (every completion token is a model token, mask True)."""
    return Turn(
        prompt_ids=completion.prompt_ids,
        completion_ids=completion.completion_ids,
        completion_logprobs=completion.logprobs,
        completion_mask=[True] * len(completion.completion_ids),
        temperature=sampling.temperature,
        policy_step=completion.policy_step,
        finish_reason=completion.finish_reason,
    )


class SingleTurnEnv(Environment):
    """A dataset of prompts and a rubric; groups are sampled with one `n`-choice request."""

    def __init__(
        self,
        name: str,
        dataset: list[Example],
        rubric: Rubric,
        eval_dataset: list[Example] | None = None,
        reference_format: str | None = None,
    ):
        """`reference_format` turns an answer into the reference reply (`{answer}` is replaced), e.g. for SFT."""
        ids = [ex.example_id for ex in dataset]
        if len(set(ids)) != len(ids):
            raise ValueError(f"environment `{name}`: example_id values in the dataset are not unique")
        self.name, self.rubric = name, rubric
        self._dataset, self._eval_dataset = dataset, eval_dataset if eval_dataset is not None else []
        self.reference_format = reference_format

    def dataset(self) -> list[Example]:
        return self._dataset

    def eval_dataset(self) -> list[Example]:
        return self._eval_dataset

    def reference_completion(self, example: Example) -> list[dict] | None:
        if self.reference_format is None:
            return None
        return [{"role": "assistant", "content": self.reference_format.replace("{answer}", example.answer)}]

    def _to_rollout(self, example: Example, completion: Completion, sampling: SamplingConfig) -> Rollout:
        return Rollout(
            example_id=example.example_id,
            env_name=self.name,
            prompt=example.prompt,
            completion=[{"role": "assistant", "content": completion.text}],
            turns=[completion_turn(completion, sampling)],
            is_truncated=completion.finish_reason == "length",
        )

    async def rollout(
        self, client: InferenceClient, example: Example, sampling: SamplingConfig, seed: int | None = None
    ) -> Rollout:
        (completion,) = await client.chat(example.prompt, sampling, n=1, seed=seed)
        return self._to_rollout(example, completion, sampling)

    async def run_group(
        self, client: InferenceClient, example: Example, sampling: SamplingConfig, n: int, seed: int | None = None
    ) -> list[Rollout]:
        try:
            completions = await client.chat(example.prompt, sampling, n=n, seed=seed)
            if len(completions) != n:
                raise ValueError(f"asked for {n} choices, got {len(completions)}")
        except Exception as e:
            error = f"rollout failed: {describe_exception(e)}"
            get_logger("environments").warning("%s example %d: %s", self.name, example.example_id, error)
            return [errored_rollout(self.name, example, error) for _ in range(n)]
        rollouts = [self._to_rollout(example, c, sampling) for c in completions]
        return list(await asyncio.gather(*(self.score(r, example) for r in rollouts)))

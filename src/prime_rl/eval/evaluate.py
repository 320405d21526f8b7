"""The reusable core of evaluation: run environments' eval splits through a sampling client and summarise.

`rl`'s orchestrator can call `evaluate` every `[orchestrator.eval] interval` steps and log the result under `eval/`.
"""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

from prime_rl.environments.base import Environment, Example, Rollout, SamplingArgs
from prime_rl.environments.client import SamplingClient
from prime_rl.eval.config import EvalEnvConfig, OnlineEvalConfig
from prime_rl.eval.metrics import group_metrics
from prime_rl.orchestrator.config import SamplingConfig


def load_eval_environments(env_configs: list[EvalEnvConfig], tokenizer: Any) -> dict[str, Environment]:
    """`{name: environment}` in config order (name: the table's `name`, else the environment's own name)."""
    from prime_rl.environments import load_environments

    return load_environments(env_configs, tokenizer)


def sampling_args(config: SamplingConfig, seed: int | None) -> SamplingArgs:
    return config.to_args(seed)


def example_limits(env_configs: list[EvalEnvConfig], names: list[str], default: int | None) -> dict[str, int | None]:
    """`{env name: num_examples}`: a table's own `num_examples`, else the default."""
    return {name: c.num_examples or default for name, c in zip(names, env_configs, strict=True)}


def eval_examples(env: Environment, name: str, num_examples: int | None) -> list[Example]:
    """The first `num_examples` of the environment's eval split (all of it for None); raises when it is empty."""
    examples = env.eval_dataset()
    if not examples:
        raise ValueError(f"environment `{name}` has no eval split (eval_dataset() is empty)")
    return examples if num_examples is None else examples[:num_examples]


async def run_groups(
    env: Environment,
    client: SamplingClient,
    examples: list[Example],
    k: int,
    sampling: SamplingArgs,
    semaphore: asyncio.Semaphore,
) -> list[list[Rollout]]:
    """One scored group of `k` rollouts per example, in example order (rollout errors are inside the rollouts).
    A seeded `sampling` gets `seed + example_id` per example, so examples do not share one random stream."""

    async def one(example: Example) -> list[Rollout]:
        seeded = (
            sampling
            if sampling.seed is None
            else dataclasses.replace(sampling, seed=sampling.seed + example.example_id)
        )
        async with semaphore:
            return await env.run_group(client, example, seeded, k)

    return list(await asyncio.gather(*(one(ex) for ex in examples)))


async def evaluate(
    envs: dict[str, Environment],
    client: SamplingClient,
    num_examples: int | dict[str, int | None] | None,
    k: int,
    sampling: SamplingArgs,
    max_concurrent: int = 32,
    pass_threshold: float = 1.0,
) -> dict[str, float]:
    """`{"<env>/<metric>": value}` for every environment: `avg@k`, `pass@1..k`, `completion_len`, `truncated`,
    `errored`, `num_examples`, `reward/<fn>` (see `group_metrics`). `num_examples` is one limit for all environments
    or a per-name mapping; all environments run concurrently under one `max_concurrent` limit of examples."""
    semaphore = asyncio.Semaphore(max_concurrent)
    limits = num_examples if isinstance(num_examples, dict) else dict.fromkeys(envs, num_examples)
    examples = {name: eval_examples(env, name, limits.get(name)) for name, env in envs.items()}
    groups = await asyncio.gather(
        *(run_groups(env, client, examples[name], k, sampling, semaphore) for name, env in envs.items())
    )
    out: dict[str, float] = {}
    for name, env_groups in zip(envs, groups, strict=True):
        out |= {f"{name}/{key}": value for key, value in group_metrics(env_groups, pass_threshold).items()}
    return out


async def online_eval(
    config: OnlineEvalConfig, envs: dict[str, Environment], client: SamplingClient, seed: int | None = None
) -> dict[str, float]:
    """`evaluate` as configured by `[orchestrator.eval]`, with every key prefixed `eval/` for the metrics log."""
    metrics = await evaluate(
        envs,
        client,
        example_limits(config.env, list(envs), config.num_examples),
        config.rollouts_per_example,
        sampling_args(config.sampling, seed),
        config.max_concurrent,
        config.pass_threshold,
    )
    return {f"eval/{key}": value for key, value in metrics.items()}

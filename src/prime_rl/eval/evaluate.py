"""The reusable core of evaluation: run environments' eval splits through the inference client and summarise.

`rl`'s orchestrator can call `evaluate` every `[orchestrator.eval] interval` steps and log the result under `eval/`.
"""

from __future__ import annotations

import asyncio
from typing import Any

from prime_rl.client import InferenceClient
from prime_rl.environments import load_environments
from prime_rl.environments.base import Environment
from prime_rl.environments.types import Example, Rollout, SamplingConfig
from prime_rl.eval.config import EvalEnvConfig, OnlineEvalConfig
from prime_rl.eval.metrics import group_metrics


def load_eval_environments(env_configs: list[EvalEnvConfig], tokenizer: Any) -> dict[str, Environment]:
    """`{name: environment}` in config order (name: the table's `name`, else the environment's own name)."""
    return load_environments(env_configs, tokenizer)


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
    client: InferenceClient,
    examples: list[Example],
    k: int,
    sampling: SamplingConfig,
    seed: int | None,
    semaphore: asyncio.Semaphore,
) -> list[list[Rollout]]:
    """One scored group of `k` rollouts per example, in example order (rollout errors are inside the rollouts).
    With a `seed`, example `i` is sampled with `seed + i`, so examples do not share one random stream."""

    async def one(example: Example) -> list[Rollout]:
        async with semaphore:
            return await env.run_group(
                client, example, sampling, k, None if seed is None else seed + example.example_id
            )

    return list(await asyncio.gather(*(one(ex) for ex in examples)))


async def evaluate(
    envs: dict[str, Environment],
    client: InferenceClient,
    num_examples: int | dict[str, int | None] | None,
    k: int,
    sampling: SamplingConfig,
    seed: int | None = None,
    max_concurrent: int = 32,
    pass_threshold: float = 1.0,
) -> dict[str, float]:
    """`{"<env>/<metric>": value}` for every environment: `avg@k`, `pass@1..k`, `completion_len`, `truncated`,
    `errored`, `num_examples`, `reward/<fn>` (see `group_metrics`). `num_examples` is one limit for all environments
    or a per-name mapping; all environments run concurrently under one `max_concurrent` limit of examples; `seed`
    (None: unseeded) is offset by each example's id."""
    semaphore = asyncio.Semaphore(max_concurrent)
    limits = num_examples if isinstance(num_examples, dict) else dict.fromkeys(envs, num_examples)
    examples = {name: eval_examples(env, name, limits.get(name)) for name, env in envs.items()}
    groups = await asyncio.gather(
        *(run_groups(env, client, examples[name], k, sampling, seed, semaphore) for name, env in envs.items())
    )
    out: dict[str, float] = {}
    for name, env_groups in zip(envs, groups, strict=True):
        out |= {f"{name}/{key}": value for key, value in group_metrics(env_groups, pass_threshold).items()}
    return out


async def online_eval(
    config: OnlineEvalConfig, envs: dict[str, Environment], client: InferenceClient, seed: int | None = None
) -> dict[str, float]:
    """`evaluate` as configured by `[orchestrator.eval]`, with every key prefixed `eval/` for the metrics log."""
    metrics = await evaluate(
        envs,
        client,
        example_limits(config.env, list(envs), config.num_examples),
        config.rollouts_per_example,
        config.sampling,
        seed,
        config.max_concurrent,
        config.pass_threshold,
    )
    return {f"eval/{key}": value for key, value in metrics.items()}

"""Periodic evaluation during `rl` (`[orchestrator.eval]`): `online_eval` every `interval` steps and on the final
policy, each result logged as its own `eval/...` record in `metrics/orchestrator.jsonl` (docs/rl.md)."""

from __future__ import annotations

import time
from typing import Any

from prime_rl.client import InferenceClient
from prime_rl.environments.base import Environment
from prime_rl.eval.evaluate import load_eval_environments, online_eval
from prime_rl.orchestrator.config import OrchestratorConfig
from prime_rl.orchestrator.scheduler import PolicyScheduler
from prime_rl.run_dir import RunDir
from prime_rl.utils.logger import get_logger
from prime_rl.utils.metrics import MetricsWriter, read_metrics


def setup_eval_environments(config: OrchestratorConfig, tokenizer: Any) -> dict[str, Environment]:
    """The eval environments of `[orchestrator.eval]` (none without it)."""
    return load_eval_environments(config.eval.env, tokenizer) if config.eval is not None else {}


def eval_due(config: OrchestratorConfig, step: int) -> bool:
    """Evaluate after the batch of `step` when `step + 1` is a multiple of `eval.interval`, and after the last one."""
    if config.eval is None:
        return False
    done = step + 1
    return done % config.eval.interval == 0 or done == config.max_steps


def log_eval(config: OrchestratorConfig, step: int, metrics: dict[str, float]) -> None:
    """An own record in `metrics/orchestrator.jsonl` (same `step` as the batch it followed, -1 for the base policy
    before the first step) and a console line."""
    avg = " | ".join(f"{k[5:]} {v:.4f}" for k, v in metrics.items() if "/avg@" in k)
    get_logger("orchestrator").info("Eval after step %d (policy %d) | %s", step, metrics["eval/policy"], avg)
    MetricsWriter(RunDir(config.output_dir).metrics("orchestrator")).write(step, metrics)


def final_eval_logged(config: OrchestratorConfig) -> bool:
    """Whether `metrics/orchestrator.jsonl` holds the evaluation of the final policy (`max_steps`)."""
    path = RunDir(config.output_dir).metrics("orchestrator")
    return path.is_file() and any(r.get("eval/policy") == config.max_steps for r in read_metrics(path))


async def run_eval(
    config: OrchestratorConfig,
    step: int,
    envs: dict[str, Environment],
    client: InferenceClient,
    scheduler: PolicyScheduler,
) -> dict[str, float]:
    """`online_eval` of the served policy; after the last step it first loads the final policy `max_steps`."""
    start = time.perf_counter()
    if step + 1 == config.max_steps:
        await scheduler.ensure(config.max_steps, "the final evaluation")
    metrics = await online_eval(config.eval, envs, client, seed=config.seed)
    client.raise_if_unreachable()
    return metrics | {"eval/policy": scheduler.loaded, "eval/time": time.perf_counter() - start}

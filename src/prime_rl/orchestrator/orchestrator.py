"""The orchestrator loop (`orchestrator @ orch.toml`, started by `cli.py`): examples → rollouts on the inference
server(s) → rewards → advantages → batches.

One batch per step, written atomically to `output_dir/rollouts/step_N`. Before generating step N the loaded policy
must be >= N - max_async_level (`scheduler.py`). Metrics go to the console and `metrics/orchestrator.jsonl`.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from prime_rl.client import InferenceClient, InferenceError, RetryPolicy
from prime_rl.environments import load_environments
from prime_rl.environments.base import Environment
from prime_rl.orchestrator import ckpt
from prime_rl.orchestrator.batch import Group, assemble_batch
from prime_rl.orchestrator.buffer import ExampleBuffer
from prime_rl.orchestrator.config import OrchestratorConfig
from prime_rl.orchestrator.difficulty import DifficultyPools
from prime_rl.orchestrator.evaluation import eval_due, final_eval_logged, log_eval, run_eval, setup_eval_environments
from prime_rl.orchestrator.generate import Generation, ScoreTimer, generate_groups
from prime_rl.orchestrator.metrics import (
    SAMPLE_COLUMNS,
    batch_metrics,
    format_line,
    pool_metrics,
    refill_metrics,
    reward_metrics,
    rollout_metrics,
    sample_rows,
)
from prime_rl.orchestrator.refill import has_signal, refill
from prime_rl.orchestrator.scheduler import PolicyScheduler, UpdateFn
from prime_rl.orchestrator.teacher import add_teacher_logprobs, setup_teacher_client
from prime_rl.run_dir import RunDir
from prime_rl.transport.base import BatchSender
from prime_rl.transport.filesystem import FileSystemSender
from prime_rl.transport.types import TrainingBatch, batch_digest
from prime_rl.utils.config import RunError, config_key
from prime_rl.utils.lazy_tokenizer import LazyTokenizer
from prime_rl.utils.logger import get_logger, setup_process_logger
from prime_rl.utils.metrics import MetricsWriter
from prime_rl.utils.models import resolve_model_path
from prime_rl.utils.wandb_logging import active_run, finish_wandb, setup_wandb


def setup_tokenizer(config: OrchestratorConfig) -> LazyTokenizer:
    return LazyTokenizer(resolve_model_path(config.model.name))


def setup_environments(config: OrchestratorConfig, tokenizer: Any) -> dict[str, Environment]:
    """`{name: environment}` in config order (name: the `[[env]]` name, else the environment's own name);
    multi-turn environments get the policy's tokenizer."""
    return load_environments(config.env, tokenizer)


def setup_buffer(config: OrchestratorConfig, envs: dict[str, Environment]) -> ExampleBuffer:
    weights = {name: env_config.weight for name, env_config in zip(envs, config.env, strict=True)}
    pools = DifficultyPools(config.difficulty) if config.difficulty is not None else None
    return ExampleBuffer({name: env.dataset() for name, env in envs.items()}, weights, seed=config.seed, pools=pools)


def log_step(config: OrchestratorConfig, step: int, metrics: dict[str, float]) -> None:
    get_logger("orchestrator").info(format_line(step, config.max_steps, metrics))
    MetricsWriter(RunDir(config.output_dir).metrics("orchestrator")).write(step, metrics)


def log_samples(config: OrchestratorConfig, step: int, groups: list[Group]) -> None:
    """A W&B table of the step's first rollouts every `wandb.samples_interval` steps."""
    interval = config.wandb.samples_interval if config.wandb else 0
    if interval and step % interval == 0 and (run := active_run()) is not None:
        run.log_table(step, "samples", SAMPLE_COLUMNS, sample_rows(step, groups, config.wandb.samples_per_step))


def make_batch(
    config: OrchestratorConfig, step: int, generation: Generation, groups: list[Group]
) -> tuple[TrainingBatch, dict[str, Any]]:
    """Advantages and batch assembly of `groups`; returns the batch and the step's rollout (all generated groups),
    batch and timing metrics (the digest is taken once teacher logprobs are in)."""
    start = time.perf_counter()
    batch, stats = assemble_batch(step, groups, config.advantage, config.seq_len, config.filter_zero_variance)
    return batch, {
        **reward_metrics(generation.groups),
        **rollout_metrics(generation.groups),
        **batch_metrics(step, batch, stats),
        "perf/gen_tokens_per_s": generation.tokens / max(generation.wall_s, 1e-9),
        "time/generate": generation.wall_s,
        "time/score": generation.score_s,
        "time/write": time.perf_counter() - start,
    }


def policy_loader(client: InferenceClient) -> UpdateFn:
    """Policy 0 is the base model (`/reload_weights`); policy K > 0 is `broadcasts/step_K` (`/update_weights`)."""

    async def load(weight_dir: Path, step: int) -> None:
        if step == 0:
            await client.reload_weights()
        else:
            await client.update_weights(weight_dir, step)

    return load


def setup_client(config: OrchestratorConfig) -> InferenceClient:
    """The one client of every request, retried for `client.retry_timeout` seconds; a server still failing then
    stops the run (`remember_unreachable`: a down server is not a rollout's fault, architecture.md §7)."""
    c = config.client
    retry = RetryPolicy(deadline=c.retry_timeout, key="client.retry_timeout")
    return InferenceClient(c.base_url, config.model.name, c.api_key, c.timeout, retry, remember_unreachable=True)


async def start_or_resume(config: OrchestratorConfig, buffer: ExampleBuffer, client: InferenceClient) -> int:
    """The first step to produce. Fresh: an earlier run's rollouts and broadcasts are removed and the server reloads
    the base model. Resume from S: the buffer state of the checkpoint; the files of the lost part of the run are
    discarded (`run_dir.py`: a no-op under `rl`, which did it before starting any process)."""
    run = RunDir(config.output_dir)
    start_step = run.resume_step(config.ckpt.resume_step, ("orchestrator",))
    if start_step is None:
        run.discard_after(0, checkpoints=False)  # an earlier run's batches and policies
        await client.reload_weights()
        return 0
    buffer.load_state_dict(ckpt.load_ckpt(config.output_dir, start_step)["buffer"])
    stale = run.discard_after(start_step)
    run.rewind_metrics(start_step, ("orchestrator",))
    get_logger("orchestrator").info(
        "resuming from orchestrator checkpoint of step %d (discarded %d stale step directories)",
        start_step,
        len(stale),
    )
    return start_step


async def orchestrate_step(
    config: OrchestratorConfig,
    step: int,
    buffer: ExampleBuffer,
    envs: dict[str, Environment],
    client: InferenceClient,
    scheduler: PolicyScheduler,
    sender: BatchSender,
    timer: ScoreTimer,
    teacher: InferenceClient | None = None,
) -> None:
    """Policy → examples → rollouts (refills) → difficulty pools → (checkpoint of step + 1) → (teacher logprobs) →
    metrics record → batch."""
    step_start = time.perf_counter()
    waited = await scheduler.prepare(step)

    async def generate(examples: list, first_group: int) -> Generation:
        generation = await generate_groups(
            envs, client, examples, config.rollouts_per_example, config.sampling, config.max_concurrent, timer,
            seed=config.seed, step=step, first_group=first_group,
        )  # fmt: skip
        client.raise_if_unreachable()
        return generation

    generation = await generate(buffer.sample(config.examples_per_step), 0)
    groups, metrics = generation.groups, {}
    if config.refill_zero_advantage:
        generation, filled = await refill(generation, buffer.sample, generate, config.max_refill_groups)
        groups, metrics = filled.groups, refill_metrics(filled)
        if filled.gave_up:
            get_logger("orchestrator").warning(
                "step %d: refill gave up after %d extra groups (max_refill_groups); %d of %d groups have zero "
                "advantage and stay in the batch", step, filled.extra, sum(not has_signal(g) for g in groups),
                len(groups),
            )  # fmt: skip
    if buffer.pools is not None:
        buffer.pools.update(generation.groups)
        metrics |= pool_metrics(buffer.pools)
    if ckpt.is_ckpt_step(step + 1, config.ckpt.interval, config.max_steps):
        ckpt.save_ckpt(config.output_dir, step + 1, {"buffer": buffer.state_dict()}, config.ckpt.keep_last)
    batch, batch_record = make_batch(config, step, generation, groups)
    if teacher is not None:
        start = time.perf_counter()
        metrics |= await add_teacher_logprobs(batch, teacher, config.teacher.temperature, config.max_concurrent)
        teacher.raise_if_unreachable()
        metrics["time/teacher"] = time.perf_counter() - start
    metrics |= batch_record | {
        "batch/digest": batch_digest(batch),
        "policy/loaded": float(scheduler.loaded),
        "time/wait_for_weights": waited,
        "time/step": time.perf_counter() - step_start,
    }
    # The record before the batch: a batch the trainer may train always has its record (a resume after that step
    # never writes it again, docs/resume.md).
    log_step(config, step, metrics)
    log_samples(config, step, groups)
    sender.send(batch)


async def run(config: OrchestratorConfig) -> None:
    logger = setup_process_logger("orchestrator", config.log, config.output_dir)
    tokenizer = setup_tokenizer(config)
    with config_key(config, "env"):
        envs = setup_environments(config, tokenizer)
    with config_key(config, "eval.env"):
        eval_envs = setup_eval_environments(config, tokenizer)
    buffer = setup_buffer(config, envs)
    client = setup_client(config)
    teacher = setup_teacher_client(config.teacher) if config.teacher is not None else None
    setup_wandb(config.wandb, "orchestrator", config.output_dir, config.model_dump(mode="json"))
    try:
        await client.wait_healthy(config.client.health_timeout)
        if teacher is not None:
            await teacher.wait_healthy(config.teacher.client.health_timeout)
        start_step = await start_or_resume(config, buffer, client)
        # After a resume the server may hold any weights (loaded = -1): the first step always loads a policy.
        scheduler = PolicyScheduler(
            config.output_dir,
            config.max_async_level,
            policy_loader(client),
            0 if start_step == 0 else -1,
            timeout=config.weights_timeout,
        )
        sender = FileSystemSender(config.output_dir, keep=config.max_async_level + 4)
        timer = ScoreTimer(envs)
        if start_step == 0 and config.eval is not None and config.eval.eval_base:
            log_eval(config, -1, await run_eval(config, -1, eval_envs, client, scheduler))
        logger.info("orchestrating steps %d..%d with envs %s", start_step, config.max_steps - 1, list(envs))
        for step in range(start_step, config.max_steps):
            await orchestrate_step(config, step, buffer, envs, client, scheduler, sender, timer, teacher)
            if eval_due(config, step):
                log_eval(config, step, await run_eval(config, step, eval_envs, client, scheduler))
        if start_step == config.max_steps and eval_due(config, start_step - 1) and not final_eval_logged(config):
            # Resumed after the last step but before its evaluation was logged (killed while evaluating).
            log_eval(config, start_step - 1, await run_eval(config, start_step - 1, eval_envs, client, scheduler))
    finally:
        for env in [*envs.values(), *eval_envs.values()]:
            await env.close()
        await client.close()
        if teacher is not None:
            await teacher.close()
    finish_wandb()
    logger.info("orchestrator finished %d steps", config.max_steps)


def orchestrate(config: OrchestratorConfig) -> None:
    """The `orchestrator` command: `run`, where a server that stays down or refuses a request, or a policy that never
    arrives, ends the run with one line naming it (no traceback)."""
    try:
        asyncio.run(run(config))
    except (InferenceError, TimeoutError) as e:
        raise RunError(str(e)) from e

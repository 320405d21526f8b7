"""`orchestrator @ orch.toml`: examples → rollouts on the inference server(s) → rewards → advantages → batches.

One batch per step, written atomically to `output_dir/rollouts/step_N`. Before generating step N the loaded policy
must be >= N - max_async_level (`scheduler.py`). Metrics go to the console and `metrics/orchestrator.jsonl`.
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prime_rl.orchestrator.config import OrchestratorConfig
from prime_rl.utils.config import cli

if TYPE_CHECKING:
    from prime_rl.environments.base import Environment, SamplingArgs
    from prime_rl.orchestrator.admin import InferenceAdmin
    from prime_rl.orchestrator.buffer import ExampleBuffer
    from prime_rl.orchestrator.generate import Generation
    from prime_rl.orchestrator.scheduler import UpdateFn
    from prime_rl.transport.base import BatchSender


def setup_tokenizer(config: OrchestratorConfig) -> Any:
    from transformers import AutoTokenizer

    from prime_rl.utils.models import resolve_model_path

    return AutoTokenizer.from_pretrained(resolve_model_path(config.model.name))


def setup_environments(config: OrchestratorConfig, tokenizer: Any) -> dict[str, Environment]:
    """`{name: environment}` in config order (name: the `[[env]]` name, else the environment's own name);
    multi-turn environments get the policy's tokenizer."""
    from prime_rl.environments import load_environment

    envs = {}
    for env_config in config.env:
        env = load_environment(env_config.id, **env_config.args)
        env.setup(tokenizer)
        name = env_config.name or env.name
        if name in envs:
            raise ValueError(f"two environments are named `{name}` (ids {env_config.id!r}, ...): set `name` in [[env]]")
        envs[name] = env
    return envs


def setup_buffer(config: OrchestratorConfig, envs: dict[str, Environment]) -> ExampleBuffer:
    from prime_rl.orchestrator.buffer import ExampleBuffer

    weights = {name: env_config.weight for name, env_config in zip(envs, config.env, strict=True)}
    return ExampleBuffer({name: env.dataset() for name, env in envs.items()}, weights, seed=config.seed)


def setup_sampling(config: OrchestratorConfig) -> SamplingArgs:
    from prime_rl.environments.base import SamplingArgs

    s = config.sampling
    return SamplingArgs(temperature=s.temperature, top_p=s.top_p, max_tokens=s.max_tokens, stop=s.stop)


def log_step(config: OrchestratorConfig, step: int, metrics: dict[str, float]) -> None:
    from prime_rl.orchestrator.metrics import format_line
    from prime_rl.utils.logger import get_logger
    from prime_rl.utils.metrics import MetricsWriter

    get_logger("orchestrator").info(format_line(step, config.max_steps, metrics))
    MetricsWriter(config.output_dir / "metrics" / "orchestrator.jsonl").write(step, metrics)


def write_batch(config: OrchestratorConfig, step: int, generation: Generation, sender: BatchSender) -> dict[str, float]:
    """Advantages, batch assembly and the atomic write; returns the step's rollout, batch and timing metrics."""
    from prime_rl.orchestrator.batch import assemble_batch
    from prime_rl.orchestrator.metrics import batch_metrics, reward_metrics, rollout_metrics

    start = time.perf_counter()
    batch, stats = assemble_batch(
        step, generation.groups, config.advantage, config.seq_len, config.filter_zero_variance
    )
    sender.send(batch)
    return {
        **reward_metrics(generation.groups),
        **rollout_metrics(generation.groups),
        **batch_metrics(step, batch, stats),
        "perf/gen_tokens_per_s": generation.tokens / max(generation.wall_s, 1e-9),
        "time/generate": generation.wall_s,
        "time/score": generation.score_s,
        "time/write": time.perf_counter() - start,
    }


def policy_loader(admin: InferenceAdmin) -> UpdateFn:
    """Policy 0 is the base model (`/reload_weights`); policy K > 0 is `broadcasts/step_K` (`/update_weights`)."""

    async def load(weight_dir: Path, step: int) -> None:
        if step == 0:
            await admin.reload_weights()
        else:
            await admin.update_weights(weight_dir, step)

    return load


async def run(config: OrchestratorConfig) -> None:
    from prime_rl.environments.client import SamplingClient
    from prime_rl.orchestrator import ckpt
    from prime_rl.orchestrator.admin import InferenceAdmin
    from prime_rl.orchestrator.generate import ScoreTimer, generate_groups
    from prime_rl.orchestrator.scheduler import PolicyScheduler
    from prime_rl.transport.filesystem import FileSystemSender
    from prime_rl.utils.logger import setup_logger

    logger = setup_logger("orchestrator", config.log.level, config.log.file)
    envs = setup_environments(config, setup_tokenizer(config))
    buffer = setup_buffer(config, envs)
    sampling = setup_sampling(config)
    c = config.client
    client = SamplingClient(c.base_url, config.model.name, c.api_key, c.timeout, max_retries=c.retries)
    admin = InferenceAdmin(c.base_url, c.api_key, c.timeout)
    await admin.wait_healthy(c.health_timeout)

    start_step = ckpt.resolve_resume_step(config.output_dir, config.ckpt.resume_step)
    if start_step is None:
        start_step = 0
        await admin.reload_weights()
    else:
        buffer.load_state_dict(ckpt.load_ckpt(config.output_dir, start_step)["buffer"])
        logger.info("resuming from orchestrator checkpoint of step %d", start_step)
    # After a resume the server may hold any weights (loaded = -1): the first step always loads a policy.
    loaded = 0 if start_step == 0 else -1
    scheduler = PolicyScheduler(
        config.output_dir, config.max_async_level, policy_loader(admin), loaded, timeout=config.weights_timeout
    )
    sender = FileSystemSender(config.output_dir, keep=config.max_async_level + 4)
    timer = ScoreTimer(envs)
    logger.info("orchestrating steps %d..%d with envs %s", start_step, config.max_steps - 1, list(envs))

    try:
        for step in range(start_step, config.max_steps):
            if config.ckpt.interval and step > start_step and step % config.ckpt.interval == 0:
                ckpt.save_ckpt(config.output_dir, step, {"buffer": buffer.state_dict()}, config.ckpt.keep_last)
            step_start = time.perf_counter()
            waited = await scheduler.prepare(step)
            examples = buffer.sample(config.examples_per_step)
            generation = await generate_groups(
                envs, client, examples, config.rollouts_per_example, sampling, config.max_concurrent, timer
            )
            metrics = write_batch(config, step, generation, sender)
            metrics |= {
                "policy/loaded": float(scheduler.loaded),
                "time/wait_for_weights": waited,
                "time/step": time.perf_counter() - step_start,
            }
            log_step(config, step, metrics)
        if config.ckpt.interval:
            ckpt.save_ckpt(config.output_dir, config.max_steps, {"buffer": buffer.state_dict()}, config.ckpt.keep_last)
    finally:
        await client.close()
        await admin.close()
    logger.info("orchestrator finished %d steps", config.max_steps)


def main() -> None:
    config = cli(OrchestratorConfig, "orchestrator")
    try:
        asyncio.run(run(config))
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()

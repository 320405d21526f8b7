"""The reference loop: environment -> in-process sampling -> advantages -> the trainer's step, one process, on-policy.

It reads the same `rl` config and calls the same functions as the three processes, minus everything asynchronous:
no files, no polling, no second process. Sampling goes through the real inference app and engine, in process (an
ASGI transport instead of a socket), with the per-request seeds the orchestrator sends; after each step the new
weights are copied into the engine the way `/update_weights` copies them. With `max_async_level = 0`, `rl` must
produce the same batches (digests) and the same final weights: `tests/integration/test_reference_loop.py`.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import httpx
import torch
from transformers import PreTrainedModel

from prime_rl.client import InferenceClient
from prime_rl.inference.server import setup_app, setup_engine
from prime_rl.launcher.config import RLConfig
from prime_rl.orchestrator.batch import assemble_batch
from prime_rl.orchestrator.generate import generate_groups
from prime_rl.orchestrator.metrics import reward_metrics
from prime_rl.orchestrator.orchestrator import setup_buffer, setup_environments, setup_tokenizer
from prime_rl.trainer.lora import served_state
from prime_rl.trainer.model import setup_model
from prime_rl.trainer.optim import setup_optimizer
from prime_rl.trainer.packing import pack_samples
from prime_rl.trainer.rl.loss import setup_loss_fn
from prime_rl.trainer.scheduler import setup_scheduler
from prime_rl.trainer.step import train_step
from prime_rl.transport.types import batch_digest
from prime_rl.utils.threads import setup_threads


@dataclass
class ReferenceRun:
    """What the loop produced: the trained model (policy `max_steps`) and, per step, the batch digest, the mean reward
    (`reward/mean` of `metrics/orchestrator.jsonl`) and the loss."""

    model: PreTrainedModel
    digests: list[str] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    rewards: list[float] = field(default_factory=list)


async def run_reference(config: RLConfig) -> ReferenceRun:
    """The orchestrator's and the trainer's set-up, then per step: examples, groups, batch, train step, new weights."""
    orch, trainer = config.orchestrator, config.trainer
    engine = setup_engine(config.inference)  # policy 0: the base model, like the server after `/reload_weights`
    app = setup_app(config.inference, engine)
    client = InferenceClient(
        ["http://in-process/v1"], orch.model.name, config.inference.server.api_key,
        transport=httpx.ASGITransport(app=app),
    )  # fmt: skip
    envs = setup_environments(orch, setup_tokenizer(orch))
    buffer = setup_buffer(orch, envs)

    setup_threads(trainer.num_threads, "trainer", "trainer.num_threads")
    torch.manual_seed(trainer.seed)
    loss_fn = setup_loss_fn(trainer.loss)
    model = setup_model(trainer.model)
    optimizer = setup_optimizer(trainer.optim, model)
    scheduler = setup_scheduler(trainer.scheduler, optimizer, trainer.max_steps)
    run = ReferenceRun(model)
    try:
        for step in range(orch.max_steps):
            examples = buffer.sample(orch.examples_per_step)
            generation = await generate_groups(
                envs, client, examples, orch.rollouts_per_example, orch.sampling, orch.max_concurrent,
                seed=orch.seed, step=step,
            )  # fmt: skip
            client.raise_if_unreachable()
            batch, _ = assemble_batch(step, generation.groups, orch.advantage, orch.seq_len, orch.filter_zero_variance)
            micro_batches = pack_samples(batch.samples, trainer.seq_len, share=trainer.packs_shared_prompts)
            if not micro_batches:
                raise ValueError(f"step {step}: the batch has no tokens ({len(batch.samples)} samples)")
            result = train_step(
                model, optimizer, scheduler, micro_batches, loss_fn, trainer.optim.max_norm,
                trainer.model.logprob_chunk_size,
            )  # fmt: skip
            await engine.load_weights(served_state(model), step + 1)  # policy step + 1 generates step + 1
            run.digests.append(batch_digest(batch))
            run.losses.append(result.loss)
            run.rewards.append(reward_metrics(generation.groups)["reward/mean"])
    finally:
        await client.close()
        engine.shutdown()
    return run


def reference_loop(config: RLConfig) -> ReferenceRun:
    """Runs `max_steps` on-policy steps of `config` in this process (nothing is written under `output_dir`)."""
    return asyncio.run(run_reference(config))


def main(config: RLConfig) -> None:
    """`python -m prime_rl.reference @ rl.toml`: one line per step, digests comparable with `metrics/*.jsonl`."""
    run = reference_loop(config)
    for step, (digest, loss, reward) in enumerate(zip(run.digests, run.losses, run.rewards, strict=True)):
        print(f"step {step} | batch/digest {digest} | reward {reward:.4f} | loss {loss:.6f}", flush=True)

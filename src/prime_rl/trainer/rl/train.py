"""The RL training loop (`trainer @ train.toml`, started by `cli.py`): step N reads `rollouts/step_N`, trains, and
writes policy N+1."""

from __future__ import annotations

import time

import torch

from prime_rl.run_dir import RunDir
from prime_rl.trainer.config import rank_threads
from prime_rl.trainer.model import model_device, model_path, setup_model, setup_tokenizer
from prime_rl.trainer.optim import setup_optimizer
from prime_rl.trainer.outputs import CheckpointManager
from prime_rl.trainer.packing import pack_samples
from prime_rl.trainer.parallel import main_decides, record_errors, setup_world
from prime_rl.trainer.report import log_step, rl_batch_metrics
from prime_rl.trainer.rl.config import RLTrainerConfig
from prime_rl.trainer.rl.data import check_staleness, check_teacher, setup_data_loader
from prime_rl.trainer.rl.loss import setup_loss_fn
from prime_rl.trainer.scheduler import setup_scheduler
from prime_rl.trainer.step import check_finite, train_step
from prime_rl.utils.config import config_key
from prime_rl.utils.fs import is_stable
from prime_rl.utils.lazy_tokenizer import LazyTokenizer
from prime_rl.utils.logger import setup_process_logger
from prime_rl.utils.metrics import MetricsWriter
from prime_rl.utils.threads import available_cores, setup_threads
from prime_rl.utils.wandb_logging import finish_wandb, setup_wandb
from prime_rl.weights.broadcast import broadcast_weights


@record_errors
def train(config: RLTrainerConfig) -> None:
    out, run = config.output_dir, RunDir(config.output_dir)
    world = setup_world(config.model.device)  # a no-op outside torchrun
    logger = setup_process_logger("trainer", config.log, out, world.is_main)
    setup_threads(rank_threads(config.num_threads or available_cores(), world.local_size), "trainer")
    torch.manual_seed(config.seed)
    with config_key(config, "loss"):
        loss_fn = setup_loss_fn(config.loss)
    model = setup_model(config.model, config.parallel, world)
    tokenizer = LazyTokenizer(model_path(config.model), lambda: setup_tokenizer(config.model))  # for exports only
    optimizer = setup_optimizer(config.optim, model)
    scheduler = setup_scheduler(config.scheduler, optimizer, config.max_steps)
    merged = config.model.lora is not None and config.model.lora.export_merged
    checkpoints = CheckpointManager(
        out, config.ckpt, config.weights, model, tokenizer, optimizer, scheduler, export_merged=merged
    )
    data = setup_data_loader(config.data, out, model.config.vocab_size, config.seed)
    metrics = None
    if world.is_main:  # rank 0 alone reports
        metrics = MetricsWriter(run.metrics("trainer"))
        setup_wandb(config.wandb, "trainer", out, config.model_dump(mode="json"))
    device = model_device(model)
    keep_broadcasts = config.max_async_level + 1

    step, nonfinite_steps = 0, 0
    save_times = {"checkpoint": 0.0, "export": 0.0}  # of the save before a step, logged in that step's record
    if config.ckpt.resume_step is not None:
        step = run.resume_step(config.ckpt.resume_step, ("trainer",))
        if world.is_main:
            run.rewind_metrics(step, ("trainer",))  # a no-op under `rl`, which rewound already
        nonfinite_steps = checkpoints.load(step).get("nonfinite_steps", 0)
        if step > 0 and not main_decides(is_stable(run.broadcast(step))):
            broadcast_weights(model, out, step, keep_broadcasts)

    logger.info(f"Training from step {step} to {config.max_steps} (output_dir {out})")
    while config.max_steps is None or step < config.max_steps:
        start = time.perf_counter()
        batch = data.get_batch(step)
        check_staleness(batch, step, config.max_async_level)
        check_teacher(batch, step, config.needs_teacher)
        waited = time.perf_counter() - start
        micro_batches = pack_samples(batch.samples, config.seq_len, share=config.packs_shared_prompts)
        if not micro_batches:
            raise ValueError(f"step {step}: the batch has no tokens ({len(batch.samples)} samples)")
        result = train_step(
            model, optimizer, scheduler, micro_batches, loss_fn, config.optim.max_norm, config.model.logprob_chunk_size
        )
        result.times["wait_for_batch"] = waited
        check_finite(result, step, config.on_nonfinite, "trainer.on_nonfinite", logger)
        nonfinite_steps += not result.finite

        t = time.perf_counter()
        broadcast_weights(model, out, step + 1, keep_broadcasts)
        result.times["broadcast"] = time.perf_counter() - t
        result.times |= save_times
        result.times["step"] = time.perf_counter() - start
        if metrics is not None:
            extra = rl_batch_metrics(step, batch, micro_batches)
            extra |= {"nonfinite": int(not result.finite), "nonfinite_steps": nonfinite_steps}
            # The record before the checkpoint: a checkpoint of step N+1 implies the record of step N (a resume from
            # N+1 never trains N again, so a record written later would be lost for good, docs/resume.md).
            log_step(step, len(batch.samples), micro_batches, result, device, metrics, logger, extra)
        step += 1
        save_times = checkpoints.maybe_save(step, step == config.max_steps, {"nonfinite_steps": nonfinite_steps})
    if step == config.max_steps:
        checkpoints.finish(step)
    finish_wandb()
    logger.info(f"Finished training at step {step}")

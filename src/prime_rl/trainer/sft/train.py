"""The SFT loop (`sft @ sft.toml`, started by `cli.py`): supervised fine-tuning on assistant tokens, exporting
`weights/step_N/` that `rl` can start from."""

from __future__ import annotations

import time

import torch

from prime_rl.run_dir import RunDir
from prime_rl.trainer.config import rank_threads
from prime_rl.trainer.model import model_device, setup_model, setup_tokenizer
from prime_rl.trainer.optim import setup_optimizer
from prime_rl.trainer.outputs import CheckpointManager
from prime_rl.trainer.packing import pack_samples
from prime_rl.trainer.parallel import record_errors, setup_world
from prime_rl.trainer.report import log_step
from prime_rl.trainer.scheduler import setup_scheduler
from prime_rl.trainer.sft.config import SFTConfig
from prime_rl.trainer.sft.data import setup_dataset
from prime_rl.trainer.sft.loss import SFT_LOSS
from prime_rl.trainer.step import check_finite, train_step
from prime_rl.utils.config import ConfigError
from prime_rl.utils.logger import setup_logger, setup_process_logger
from prime_rl.utils.metrics import MetricsWriter
from prime_rl.utils.threads import available_cores, setup_threads
from prime_rl.utils.wandb_logging import finish_wandb, setup_wandb


def setup_inputs(config: SFTConfig):
    """Tokenizer, tokenized data and the resume step; raises ConfigError naming the model, data file or checkpoint."""
    try:
        tokenizer = setup_tokenizer(config.model)
    except OSError as e:
        raise ConfigError(f"model.name `{config.model.name}`: cannot load a tokenizer: {e}") from e
    try:
        data = setup_dataset(config.data, tokenizer, config.batch_size, config.seed, config.shuffle)
    except (ValueError, OSError) as e:
        raise ConfigError(f"data: {e}") from e
    step = 0
    if config.ckpt.resume_step is not None:
        try:
            step = RunDir(config.output_dir).resume_step(config.ckpt.resume_step, ("trainer",))
        except FileNotFoundError as e:
            raise ConfigError(str(e)) from e
    return tokenizer, data, step


@record_errors
def train(config: SFTConfig) -> None:
    out, run = config.output_dir, RunDir(config.output_dir)
    world = setup_world(config.model.device)  # a no-op outside torchrun
    level = config.log.level if world.is_main else "warning"
    logger = setup_logger("sft", level)  # console only: nothing is written before the inputs check out
    setup_threads(rank_threads(config.num_threads or available_cores(), world.local_size), "trainer")
    torch.manual_seed(config.seed)
    tokenizer, data, step = setup_inputs(config)
    logger = setup_process_logger("sft", config.log, out, world.is_main)
    logger.info(f"SFT data: {len(data.samples)} conversations, {config.batch_size} per step")
    model = setup_model(config.model, config.parallel, world)
    optimizer = setup_optimizer(config.optim, model)
    scheduler = setup_scheduler(config.scheduler, optimizer, config.max_steps)
    merged = config.model.lora is not None and config.model.lora.export_merged
    checkpoints = CheckpointManager(
        out, config.ckpt, config.weights, model, tokenizer, optimizer, scheduler, export_merged=merged
    )
    metrics = None
    if world.is_main:  # rank 0 alone reports
        metrics = MetricsWriter(run.metrics("sft"))
        setup_wandb(config.wandb, "sft", out, config.model_dump(mode="json"))
    nonfinite_steps = checkpoints.load(step).get("nonfinite_steps", 0) if step > 0 else 0

    logger.info(f"Training from step {step} to {config.max_steps} (output_dir {out})")
    while step < config.max_steps:
        start = time.perf_counter()
        samples = data.get_batch(step)
        micro_batches = pack_samples(samples, config.seq_len)
        result = train_step(
            model, optimizer, scheduler, micro_batches, SFT_LOSS, config.optim.max_norm, config.model.logprob_chunk_size
        )
        check_finite(result, step, config.on_nonfinite, "on_nonfinite", logger)
        nonfinite_steps += not result.finite
        step += 1
        result.times |= checkpoints.maybe_save(step, step == config.max_steps, {"nonfinite_steps": nonfinite_steps})
        result.times["step"] = time.perf_counter() - start
        if metrics is not None:
            extra = {"nonfinite": int(not result.finite), "nonfinite_steps": nonfinite_steps}
            log_step(step - 1, len(samples), micro_batches, result, model_device(model), metrics, logger, extra)
    checkpoints.finish(step)
    finish_wandb()
    logger.info(f"Finished SFT at step {step}")

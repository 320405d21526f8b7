"""Per-step reporting of the RL trainer: one console line and one JSON line in `metrics/trainer.jsonl`."""

from __future__ import annotations

import math

import torch

from prime_rl.orchestrator.resume import batch_digest
from prime_rl.trainer.packing import MicroBatch
from prime_rl.trainer.rl.step import StepResult
from prime_rl.transport.types import TrainingBatch
from prime_rl.utils.device import peak_memory_gib
from prime_rl.utils.logger import get_logger
from prime_rl.utils.metrics import MetricsWriter, aggregate, summarize


def step_metrics(step: int, batch: TrainingBatch, micro_batches: list[MicroBatch], result: StepResult) -> dict:
    """Every loss metric as mean/std/min/max over the step, plus optimizer, batch, throughput and time figures."""
    compute = result.times["forward_backward"] + result.times["optimizer"]
    record = {
        "batch/digest": batch_digest(batch),  # which batch this step trained (docs/resume.md)
        "loss": result.loss,
        "optim/lr": result.lr,
        "optim/grad_norm": result.grad_norm,
        "perf/throughput": result.num_tokens / compute if compute > 0 else math.nan,
        "batch/samples": len(batch.samples),
        "batch/tokens": result.num_tokens,
        "batch/loss_tokens": result.num_loss_tokens,
        "batch/micro_batches": len(micro_batches),
    }
    record |= aggregate({name: torch.cat(values) for name, values in result.metrics.items()})
    record |= aggregate(
        {
            "seq_len": [n for mb in micro_batches for n in mb.seq_lens],
            "off_policy_level": [step - s.policy_step for s in batch.samples],
        },
        prefix="batch/",
    )
    record |= {f"time/{name}": seconds for name, seconds in result.times.items()}
    return record


def log_step(
    step: int,
    batch: TrainingBatch,
    micro_batches: list[MicroBatch],
    result: StepResult,
    model: torch.nn.Module,
    writer: MetricsWriter,
    extra: dict | None = None,
) -> dict:
    record = step_metrics(step, batch, micro_batches, result) | (extra or {})
    record["perf/peak_memory_gib"] = peak_memory_gib(next(model.parameters()).device)
    writer.write(step, record)
    kl = summarize(torch.cat(result.metrics["mismatch_kl"]))["mean"] if "mismatch_kl" in result.metrics else math.nan
    get_logger("trainer").info(
        f"Step {step} | Time: {result.times['step']:.2f}s | Loss: {result.loss:.4f} | "
        f"Entropy: {record['entropy/mean']:.4f} | Mismatch KL: {kl:.2e} | Grad. Norm: {result.grad_norm:.4f} | "
        f"LR: {result.lr:.2e} | Throughput: {record['perf/throughput']:.0f} tok/s | "
        f"Peak Mem.: {record['perf/peak_memory_gib']:.2f} GiB"
    )
    return record

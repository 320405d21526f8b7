"""Per-step reporting of a trainer (RL or SFT): one JSON line in `metrics/<process>.jsonl` and one console line."""

from __future__ import annotations

import logging
import math

import torch

from prime_rl.trainer.packing import MicroBatch
from prime_rl.trainer.step import StepResult
from prime_rl.transport.types import TrainingBatch, batch_digest
from prime_rl.utils.device import peak_memory_gib
from prime_rl.utils.metrics import MetricsWriter, aggregate, summarize


def step_metrics(num_samples: int, micro_batches: list[MicroBatch], result: StepResult) -> dict:
    """Every step metric as mean/std/min/max over the step, plus optimizer, batch, throughput and time figures."""
    compute = result.times["forward_backward"] + result.times["optimizer"]
    record = {
        "loss": result.loss,
        "optim/lr": result.lr,
        "optim/grad_norm": result.grad_norm,
        "perf/throughput": result.num_tokens / compute if compute > 0 else math.nan,
        "batch/samples": num_samples,
        "batch/tokens": result.num_tokens,
        "batch/loss_tokens": result.num_loss_tokens,
        "batch/micro_batches": len(micro_batches),
    }
    record |= aggregate({name: torch.cat(values) for name, values in result.metrics.items()})
    record |= aggregate({"seq_len": [n for mb in micro_batches for n in mb.seq_lens]}, prefix="batch/")
    record |= {f"time/{name}": seconds for name, seconds in result.times.items()}
    return record


def rl_batch_metrics(step: int, batch: TrainingBatch, micro_batches: list[MicroBatch]) -> dict:
    """What only an RL batch has: its digest, the sampling policy's token probabilities and off-policy levels."""
    inference_probs = torch.cat([mb.inference_logprobs[mb.loss_mask].exp() for mb in micro_batches])
    record = {"batch/digest": batch_digest(batch)}  # which batch this step trained (docs/resume.md)
    record["batch/model_tokens"] = sum(mb.num_model_tokens for mb in micro_batches)  # a shared prompt counts once
    record |= aggregate({"inference_probs": inference_probs})
    record |= aggregate({"off_policy": [step - s.policy_step for s in batch.samples]})  # named as the orchestrator's
    return record


def log_step(
    step: int,
    num_samples: int,
    micro_batches: list[MicroBatch],
    result: StepResult,
    device: torch.device,
    writer: MetricsWriter,
    logger: logging.Logger,
    extra: dict | None = None,
) -> dict:
    """Writes the metrics of step `step` (0-based: the step that produced policy `step + 1`) and logs one line."""
    record = step_metrics(num_samples, micro_batches, result) | (extra or {})
    record["perf/peak_memory_gib"] = peak_memory_gib(device)
    writer.write(step, record)
    kl = ""
    if "mismatch_kl" in result.metrics:
        kl = f" | Mismatch KL: {summarize(torch.cat(result.metrics['mismatch_kl']))['mean']:.2e}"
    logger.info(
        f"Step {step} | Time: {result.times['step']:.2f}s | Loss: {result.loss:.4f} | "
        f"Entropy: {record['entropy/mean']:.4f}{kl} | Grad. Norm: {result.grad_norm:.4f} | "
        f"LR: {result.lr:.2e} | Throughput: {record['perf/throughput']:.0f} tok/s | "
        f"Peak Mem.: {record['perf/peak_memory_gib']:.2f} GiB"
    )
    return record

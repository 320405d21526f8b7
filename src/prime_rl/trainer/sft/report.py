"""Per-step reporting of the SFT trainer: one console line and one JSON line in `metrics/sft.jsonl`."""

from __future__ import annotations

import math

import torch

from prime_rl.trainer.packing import MicroBatch
from prime_rl.trainer.rl.step import StepResult
from prime_rl.utils.device import peak_memory_gib
from prime_rl.utils.logger import get_logger
from prime_rl.utils.metrics import MetricsWriter, aggregate


def sft_metrics(num_samples: int, micro_batches: list[MicroBatch], result: StepResult, device: torch.device) -> dict:
    compute = result.times["forward_backward"] + result.times["optimizer"]
    record = {
        "loss": result.loss,
        "optim/lr": result.lr,
        "optim/grad_norm": result.grad_norm,
        "perf/throughput": result.num_tokens / compute if compute > 0 else math.nan,
        "perf/peak_memory_gib": peak_memory_gib(device),
        "batch/samples": num_samples,
        "batch/tokens": result.num_tokens,
        "batch/loss_tokens": result.num_loss_tokens,
        "batch/micro_batches": len(micro_batches),
    }
    record |= aggregate({name: torch.cat(values) for name, values in result.metrics.items()})
    record |= aggregate({"seq_len": [n for mb in micro_batches for n in mb.seq_lens]}, prefix="batch/")
    record |= {f"time/{name}": seconds for name, seconds in result.times.items()}
    return record


def log_sft_step(
    step: int,
    num_samples: int,
    micro_batches: list[MicroBatch],
    result: StepResult,
    device: torch.device,
    writer: MetricsWriter,
) -> dict:
    """Writes the metrics of step `step` (0-based: the step that produced policy `step + 1`) and logs one line."""
    record = sft_metrics(num_samples, micro_batches, result, device)
    writer.write(step, record)
    get_logger("sft").info(
        f"Step {step} | Time: {result.times['step']:.2f}s | Loss: {result.loss:.4f} | "
        f"Entropy: {record['entropy/mean']:.4f} | Grad. Norm: {result.grad_norm:.4f} | LR: {result.lr:.2e} | "
        f"Throughput: {record['perf/throughput']:.0f} tok/s | Peak Mem.: {record['perf/peak_memory_gib']:.2f} GiB"
    )
    return record

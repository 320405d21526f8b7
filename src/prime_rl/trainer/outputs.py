"""What a trainer (RL or SFT) writes besides broadcasts: checkpoints and HF exports, each on its own interval.
Under FSDP every rank calls these (they gather or write shards) and rank 0 writes the shared files.

`CheckpointManager` owns that lifecycle for one run (torchtitan's `maybe_save(step)` pattern): restore on resume, save
after a step when due, and finish the final export of a run killed between its last checkpoint and that export.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from prime_rl.run_dir import RunDir
from prime_rl.trainer.ckpt import load_checkpoint, save_checkpoint
from prime_rl.trainer.config import WeightsConfig
from prime_rl.trainer.parallel import World, main_decides
from prime_rl.utils.config.sections import CkptConfig
from prime_rl.utils.fs import is_stable
from prime_rl.weights.export import export_hf


class CheckpointManager:
    """Checkpoints (`ckpt`) and HF exports (`weights`) of one trainer's model, optimizer and scheduler under `out`."""

    def __init__(
        self,
        out: Path,
        ckpt: CkptConfig,
        weights: WeightsConfig,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        optimizer: torch.optim.Optimizer,
        scheduler: torch.optim.lr_scheduler.LRScheduler,
        export_merged: bool = False,
    ):
        self.out, self.ckpt, self.weights, self.export_merged = out, ckpt, weights, export_merged
        self.model, self.tokenizer, self.optimizer, self.scheduler = model, tokenizer, optimizer, scheduler

    def load(self, step: int) -> dict[str, Any]:
        """Restores the state saved after `step` steps; returns the `extra` dict saved with it."""
        return load_checkpoint(self.out, step, self.model, self.optimizer, self.scheduler)

    def maybe_save(self, step: int, final: bool, extra: dict[str, Any] | None = None) -> dict[str, float]:
        """Checkpoint and export after `step` steps when their intervals (or `final`) say so; returns their times."""
        times = {}
        start = time.perf_counter()
        if self.ckpt.interval and (step % self.ckpt.interval == 0 or final):
            save_checkpoint(self.out, step, self.model, self.optimizer, self.scheduler, extra)
            if World.current().is_main:
                RunDir(self.out).prune_checkpoints("trainer", self.ckpt.keep_last)
        times["checkpoint"] = time.perf_counter() - start
        start = time.perf_counter()
        if (self.weights.interval and step % self.weights.interval == 0) or (final and self.weights.final):
            export_hf(self.model, self.tokenizer, self.out, step, self.export_merged)
        times["export"] = time.perf_counter() - start
        return times

    def finish(self, step: int) -> None:
        """After the last step: writes the final export if it is missing (resumed from the final checkpoint of a run
        killed before its export)."""
        if self.weights.final and not main_decides(is_stable(RunDir(self.out).export(step))):
            export_hf(self.model, self.tokenizer, self.out, step, self.export_merged)

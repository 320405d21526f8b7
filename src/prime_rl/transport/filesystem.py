"""Filesystem transport: `rollouts/step_N/batch.bin` + `STABLE`, written atomically (DESIGN.md section 5)."""

from __future__ import annotations

import time
from pathlib import Path

from prime_rl.transport.base import BatchReceiver, BatchSender
from prime_rl.transport.types import TrainingBatch, decode_batch, encode_batch
from prime_rl.utils.fs import is_stable, keep_last, stable_dir

BATCH_FILE = "batch.bin"


def rollout_dir(output_dir: Path, step: int) -> Path:
    return Path(output_dir) / "rollouts" / f"step_{step}"


class FileSystemSender(BatchSender):
    def __init__(self, output_dir: Path, keep: int = 8):
        self.output_dir = Path(output_dir)
        self.keep = keep

    def send(self, batch: TrainingBatch) -> None:
        with stable_dir(rollout_dir(self.output_dir, batch.step)) as tmp:
            (tmp / BATCH_FILE).write_bytes(encode_batch(batch))
        keep_last(self.output_dir / "rollouts", self.keep)


class FileSystemReceiver(BatchReceiver):
    def __init__(self, output_dir: Path, poll_interval: float = 0.05):
        self.output_dir = Path(output_dir)
        self.poll_interval = poll_interval

    def available(self, step: int) -> bool:
        return is_stable(rollout_dir(self.output_dir, step))

    def receive(self, step: int, timeout: float | None = None) -> TrainingBatch:
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.available(step):
            if deadline is not None and time.monotonic() > deadline:
                where = rollout_dir(self.output_dir, step)
                raise TimeoutError(f"no batch for step {step} under {where} after {timeout}s")
            time.sleep(self.poll_interval)
        batch = decode_batch((rollout_dir(self.output_dir, step) / BATCH_FILE).read_bytes())
        if batch.step != step:
            raise ValueError(f"{rollout_dir(self.output_dir, step)} holds the batch of step {batch.step}, not {step}")
        return batch

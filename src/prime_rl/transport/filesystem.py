"""Filesystem transport: `rollouts/step_N/batch.bin` + `STABLE`, written atomically (architecture.md §5)."""

from __future__ import annotations

import time
from pathlib import Path

from prime_rl.run_dir import RunDir, keep_last
from prime_rl.transport.base import BatchReceiver, BatchSender
from prime_rl.transport.types import TrainingBatch, decode_batch, encode_batch
from prime_rl.utils.fs import is_stable, stable_dir

BATCH_FILE = "batch.bin"


class FileSystemSender(BatchSender):
    def __init__(self, output_dir: Path, keep: int = 8):
        self.run = RunDir(output_dir)
        self.keep = keep

    def send(self, batch: TrainingBatch) -> None:
        with stable_dir(self.run.rollout(batch.step)) as tmp:
            (tmp / BATCH_FILE).write_bytes(encode_batch(batch))
        keep_last(self.run.rollouts, self.keep)


class FileSystemReceiver(BatchReceiver):
    def __init__(self, output_dir: Path, poll_interval: float = 0.05):
        self.run = RunDir(output_dir)
        self.poll_interval = poll_interval

    def available(self, step: int) -> bool:
        return is_stable(self.run.rollout(step))

    def receive(self, step: int, timeout: float | None = None) -> TrainingBatch:
        where = self.run.rollout(step)
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.available(step):
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"no batch for step {step} under {where} after {timeout}s")
            time.sleep(self.poll_interval)
        batch = decode_batch((where / BATCH_FILE).read_bytes())
        if batch.step != step:
            raise ValueError(f"{where} holds the batch of step {batch.step}, not {step}")
        return batch

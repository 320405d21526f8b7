"""The live progress line of `rl`: step, reward, loss and ETA, read from `metrics/{orchestrator,trainer}.jsonl`."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from prime_rl.run_dir import RunDir


class JsonlTail:
    """Reads the complete lines appended to a JSONL file since the last call."""

    def __init__(self, path: Path):
        self.path, self.offset = path, 0

    def read(self) -> list[dict]:
        if not self.path.is_file():
            return []
        with self.path.open("rb") as f:
            f.seek(self.offset)
            data = f.read()
        end = data.rfind(b"\n") + 1
        self.offset += end
        return [json.loads(line) for line in data[:end].splitlines() if line.strip()]


def format_eta(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    seconds = int(seconds)
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


class Progress:
    """Tracks the newest orchestrator and trainer metrics; `line()` renders them."""

    def __init__(self, run: RunDir, max_steps: int):
        self.orchestrator = JsonlTail(run.metrics("orchestrator"))
        self.trainer = JsonlTail(run.metrics("trainer"))
        self.max_steps = max_steps
        self.reward: float | None = None
        self.rollout_step: int | None = None
        self.loss: float | None = None
        self.trained = 0
        self.start = time.monotonic()
        self.first_trained: float | None = None

    def update(self) -> bool:
        """Reads new metrics; True when something changed."""
        changed = False
        for record in self.orchestrator.read():
            if "reward/mean" in record:  # evaluation records have no training reward
                self.rollout_step, self.reward, changed = record["step"], record["reward/mean"], True
        for record in self.trainer.read():
            self.trained = int(record.get("step", self.trained)) + 1
            self.loss = record.get("loss", self.loss)
            if self.first_trained is None:
                self.first_trained = time.monotonic()
            changed = True
        return changed

    def eta(self) -> float | None:
        if self.first_trained is None or self.trained < 2:
            return None
        per_step = (time.monotonic() - self.first_trained) / (self.trained - 1)
        return per_step * (self.max_steps - self.trained)

    def line(self) -> str:
        reward = "-" if self.reward is None else f"{self.reward:.4f}"
        loss = "-" if self.loss is None else f"{self.loss:.4g}"
        rollouts = "-" if self.rollout_step is None else str(self.rollout_step)
        elapsed = format_eta(time.monotonic() - self.start)
        return (
            f"[rl] trained {self.trained}/{self.max_steps} | rollouts step {rollouts} | reward {reward} | "
            f"loss {loss} | elapsed {elapsed} | ETA {format_eta(self.eta())}"
        )


def show(line: str, live: bool | None = None) -> None:
    """Rewrites the console line on a terminal; prints one line per update otherwise."""
    live = sys.stdout.isatty() if live is None else live
    if live:
        sys.stdout.write("\r\033[K" + line)
    else:
        sys.stdout.write(line + "\n")
    sys.stdout.flush()

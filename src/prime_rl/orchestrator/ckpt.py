"""Orchestrator checkpoints: `checkpoints/step_N/orchestrator/state.json` + `STABLE` (architecture.md §8).

The checkpoint of step N is the state before sampling the examples of step N: resuming from it produces step N
next. It is written once the rollouts of step N-1 are generated (refills drawn, difficulty pools updated: both move
the buffer), before the batch of N-1 is written, so the trainer (which checkpoints N only after training on that
batch) never holds a checkpoint the orchestrator lacks.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from prime_rl.run_dir import RunDir
from prime_rl.utils.fs import is_stable, stable_dir

STATE_FILE = "state.json"


def save_ckpt(output_dir: Path, step: int, state: dict[str, Any], keep_last: int | None = None) -> Path:
    """Writes the state atomically; with `keep_last`, removes older orchestrator checkpoints (never one at or after
    the trainer's latest complete checkpoint: that is the step a resume needs)."""
    run = RunDir(output_dir)
    path = run.checkpoint(step, "orchestrator")
    with stable_dir(path) as tmp:
        (tmp / STATE_FILE).write_text(json.dumps({**state, "step": step}))
    run.prune_checkpoints("orchestrator", keep_last)
    return path


def is_ckpt_step(step: int, interval: int | None, max_steps: int) -> bool:
    """Whether step `step` gets a checkpoint: every `interval` steps and the last one (`max_steps`)."""
    return bool(interval) and step > 0 and (step % interval == 0 or step == max_steps)


def load_ckpt(output_dir: Path, step: int) -> dict[str, Any]:
    path = RunDir(output_dir).checkpoint(step, "orchestrator")
    if not is_stable(path):
        raise FileNotFoundError(f"orchestrator checkpoint {path} is missing or incomplete (no STABLE)")
    state = json.loads((path / STATE_FILE).read_text())
    if state.get("step") != step:
        raise ValueError(f"{path / STATE_FILE} holds step {state.get('step')}, expected {step}")
    return state

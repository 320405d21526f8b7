"""Orchestrator checkpoints: `checkpoints/step_N/orchestrator/state.json` + `STABLE` (DESIGN.md section 8).

The checkpoint of step N is the state before sampling the examples of step N: resuming from it produces step N
next. It is written right after the examples of step N-1 are sampled, before the batch of N-1 is written, so the
trainer (which checkpoints N only after training on that batch) never holds a checkpoint the orchestrator lacks.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from prime_rl.utils.fs import is_stable, stable_dir, step_dirs

STATE_FILE = "state.json"


def orchestrator_ckpt_dir(output_dir: Path, step: int) -> Path:
    return Path(output_dir) / "checkpoints" / f"step_{step}" / "orchestrator"


def complete_ckpt_steps(output_dir: Path) -> list[int]:
    """Steps with a complete (STABLE) orchestrator checkpoint, ascending."""
    roots = step_dirs(Path(output_dir) / "checkpoints", stable_only=False)
    return [step for step, path in roots.items() if is_stable(path / "orchestrator")]


def trainer_ckpt_steps(output_dir: Path) -> list[int]:
    """Steps with a complete trainer checkpoint in the same run directory (`checkpoints/step_N/trainer/STABLE`)."""
    roots = step_dirs(Path(output_dir) / "checkpoints", stable_only=False)
    return [step for step, path in roots.items() if is_stable(path / "trainer")]


def resolve_resume_step(output_dir: Path, resume_step: int | None) -> int | None:
    """None → fresh start; N → N, which must exist; -1 → the latest complete checkpoint, and when the trainer
    checkpoints into the same directory, the latest step both have: the trainer's consumed steps decide."""
    if resume_step is None:
        return None
    steps = complete_ckpt_steps(output_dir)
    if resume_step == -1:
        trainer_steps = trainer_ckpt_steps(output_dir)
        if trainer_steps:
            steps = [s for s in steps if s in trainer_steps]
        if not steps:
            root = Path(output_dir) / "checkpoints"
            matching = f" matching the trainer's (steps {trainer_steps})" if trainer_steps else ""
            raise FileNotFoundError(
                f"ckpt.resume_step = -1 but no complete orchestrator checkpoint under {root}{matching}"
            )
        return steps[-1]
    if resume_step not in steps:
        raise FileNotFoundError(
            f"no complete orchestrator checkpoint {orchestrator_ckpt_dir(output_dir, resume_step)} "
            f"(complete: {steps or 'none'})"
        )
    return resume_step


def save_ckpt(output_dir: Path, step: int, state: dict[str, Any], keep_last: int | None = None) -> Path:
    """Writes the state atomically; with `keep_last`, removes older orchestrator checkpoints (never one at or after
    the trainer's latest complete checkpoint: that is the step a resume needs)."""
    path = orchestrator_ckpt_dir(output_dir, step)
    with stable_dir(path) as tmp:
        (tmp / STATE_FILE).write_text(json.dumps({**state, "step": step}))
    if keep_last is not None:
        trainer_latest = max(trainer_ckpt_steps(output_dir), default=None)
        for old in complete_ckpt_steps(output_dir)[:-keep_last]:
            if trainer_latest is None or old < trainer_latest:
                shutil.rmtree(orchestrator_ckpt_dir(output_dir, old), ignore_errors=True)
    return path


def is_ckpt_step(step: int, interval: int | None, max_steps: int) -> bool:
    """Whether step `step` gets a checkpoint: every `interval` steps and the last one (`max_steps`)."""
    return bool(interval) and step > 0 and (step % interval == 0 or step == max_steps)


def load_ckpt(output_dir: Path, step: int) -> dict[str, Any]:
    path = orchestrator_ckpt_dir(output_dir, step)
    if not is_stable(path):
        raise FileNotFoundError(f"orchestrator checkpoint {path} is missing or incomplete (no STABLE)")
    state = json.loads((path / STATE_FILE).read_text())
    if state.get("step") != step:
        raise ValueError(f"{path / STATE_FILE} holds step {state.get('step')}, expected {step}")
    return state

"""Resume of a whole `rl` run: one step for trainer and orchestrator, and the stale files of the lost part removed.

The trainer's checkpoints are the source of truth: `-1` means the trainer's latest complete checkpoint, and the
orchestrator must hold a complete checkpoint of the same step (it writes it before the trainer can, see
`orchestrator/ckpt.py`). Both sub-configs get that concrete step, so neither resolves `-1` on its own.
"""

from __future__ import annotations

from pathlib import Path

from prime_rl.launcher.config import RLConfig
from prime_rl.orchestrator.ckpt import complete_ckpt_steps, orchestrator_ckpt_dir, trainer_ckpt_steps
from prime_rl.utils.config import ConfigError


def resolve_resume(output_dir: Path, resume_step: int) -> int:
    """The step both processes resume from; ConfigError naming the directory when it is not complete for both."""
    trainer = trainer_ckpt_steps(output_dir)
    orchestrator = complete_ckpt_steps(output_dir)
    root = Path(output_dir) / "checkpoints"
    if resume_step == -1:
        if not trainer:
            raise ConfigError(f"`ckpt.resume_step` = -1 but {root} holds no complete trainer checkpoint")
        resume_step = trainer[-1]
    elif resume_step not in trainer:
        raise ConfigError(
            f"`ckpt.resume_step` = {resume_step}: no complete trainer checkpoint {root}/step_{resume_step}/trainer "
            f"(complete: {trainer or 'none'})"
        )
    if resume_step not in orchestrator:
        raise ConfigError(
            f"`ckpt.resume_step` = {resume_step}: no complete orchestrator checkpoint "
            f"{orchestrator_ckpt_dir(output_dir, resume_step)} (complete: {orchestrator or 'none'})"
        )
    return resume_step


def pin_resume_step(config: RLConfig) -> int | None:
    """Replaces a requested resume step (e.g. -1) in both sub-configs by the resolved one; None on a fresh start."""
    requested = config.trainer.ckpt.resume_step
    if requested is None:
        return None
    if config.orchestrator.ckpt.resume_step is None:
        raise ConfigError(
            "`trainer.ckpt.resume_step` is set but `orchestrator.ckpt.resume_step` is not: use `ckpt.resume_step`"
        )
    step = resolve_resume(Path(config.trainer.output_dir), requested)
    config.trainer.ckpt.resume_step = step
    config.orchestrator.ckpt.resume_step = step
    return step


def latest_resumable(output_dir: Path) -> int | None:
    """The step `--ckpt.resume-step -1` would resume from now (None: no complete checkpoint pair)."""
    try:
        return resolve_resume(output_dir, -1)
    except ConfigError:
        return None

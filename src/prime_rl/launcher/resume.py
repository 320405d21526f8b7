"""Resume of a whole `rl` run: one step for trainer and orchestrator (`run_dir.py` owns the rule), pinned into both
sub-configs so neither resolves `-1` on its own."""

from __future__ import annotations

from pathlib import Path

from prime_rl.launcher.config import RLConfig
from prime_rl.run_dir import ResumeError, RunDir
from prime_rl.utils.config import ConfigError


def pin_resume_step(config: RLConfig) -> int | None:
    """Replaces a requested resume step (e.g. -1) in both sub-configs by the resolved one; None on a fresh start.
    ConfigError naming the directory when the step is not complete for both processes."""
    requested = config.trainer.ckpt.resume_step
    if requested is None:
        return None
    if config.orchestrator.ckpt.resume_step is None:
        raise ConfigError(
            "`trainer.ckpt.resume_step` is set but `orchestrator.ckpt.resume_step` is not: use `ckpt.resume_step`"
        )
    try:
        step = RunDir(config.trainer.output_dir).resume_step(requested)
    except ResumeError as e:
        raise ConfigError(str(e)) from None
    config.trainer.ckpt.resume_step = step
    config.orchestrator.ckpt.resume_step = step
    return step


def latest_resumable(output_dir: Path) -> int | None:
    """The step `--ckpt.resume-step -1` would resume from now (None: no complete checkpoint pair)."""
    try:
        return RunDir(output_dir).resume_step(-1)
    except ResumeError:
        return None

"""The W&B run of one process: every `MetricsWriter` record under `<process>/...` on the shared `step` axis, and
tables (sample rollouts). `wandb` is an optional dependency, imported only when `[wandb]` is configured.

Online with a shared run id (`rl` generates one), the processes write to one run in W&B's `shared` mode (the
orchestrator is the primary writer); offline, each process writes `output_dir/wandb/<process>/` under that same id
(docs/integrations.md). Either way the x-axis of every chart is the training step `step`, so trainer and
orchestrator curves align.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from prime_rl.run_dir import RunDir
from prime_rl.utils.config.sections import WandbConfig

STEP_KEY = "step"
"""The x-axis metric of every chart: the global training step of the record."""

_active: WandbRun | None = None


class WandbRun:
    """One process's handle on the shared W&B run."""

    def __init__(self, config: WandbConfig, process: str, output_dir: Path, run_config: Mapping[str, Any]):
        import wandb

        # A W&B service inherited from a parent process (its token is in the environment) would host both
        # processes' runs, and refuses the second run with the same id: each process starts its own.
        os.environ.pop(wandb.env.SERVICE, None)
        self.process = process
        # W&B's shared mode is online only and ignores `log(step=...)`: there the `step` metric alone aligns records.
        self.shared = config.id is not None and not config.offline
        primary = process == "orchestrator" or not self.shared
        settings = wandb.Settings(
            mode="offline" if config.offline else ("shared" if self.shared else "online"),
            x_label=process,
            x_primary=primary,
            x_update_finish_state=primary,
            console="off",  # `rl` already captures each process's console into logs/<process>.log
        )
        run_dir = RunDir(output_dir).wandb(process)
        run_dir.mkdir(parents=True, exist_ok=True)
        self.run = wandb.init(
            project=config.project,
            entity=config.entity,
            name=config.name,
            tags=config.tags,
            id=config.id,
            resume="allow" if config.id else None,
            dir=run_dir,
            config={process: dict(run_config)},
            settings=settings,
        )
        self.run.define_metric(STEP_KEY)
        self.run.define_metric(f"{process}/*", step_metric=STEP_KEY)

    def log(self, step: int, metrics: Mapping[str, Any]) -> None:
        """The numeric values of a metrics record (strings such as a batch digest stay in the JSONL only)."""
        data = {f"{self.process}/{k}": v for k, v in metrics.items() if isinstance(v, int | float)}
        self._log(step, data)

    def log_table(self, step: int, name: str, columns: list[str], rows: list[list[Any]]) -> None:
        import wandb

        self._log(step, {f"{self.process}/{name}": wandb.Table(columns=columns, data=rows)})

    def _log(self, step: int, data: dict[str, Any]) -> None:
        self.run.log({STEP_KEY: step, **data}, step=None if self.shared else step)

    def finish(self) -> None:
        self.run.finish()


def setup_wandb(
    config: WandbConfig | None, process: str, output_dir: Path, run_config: Mapping[str, Any]
) -> WandbRun | None:
    """Starts this process's W&B run when configured; `MetricsWriter.write` then also logs to it."""
    global _active
    if config is not None:
        _active = WandbRun(config, process, output_dir, run_config)
    return _active


def active_run() -> WandbRun | None:
    """The W&B run `setup_wandb` started in this process, if any."""
    return _active


def finish_wandb() -> None:
    """Finishes (flushes and closes) this process's W&B run, if any."""
    global _active
    if _active is not None:
        _active.finish()
        _active = None

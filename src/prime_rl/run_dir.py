"""The run directory: every path under `output_dir`, the scans for complete steps, and the resume rules.

    rl.lock                                       held (flock) by a live `rl` and its processes
    configs/<process>.toml                        resolved config of each process (written by `rl`)
    logs/<process>.log                            rl, inference, orchestrator, trainer, sft
    metrics/<process>.jsonl, discarded.jsonl      one record per step (trainer, orchestrator, sft)
    rollouts/step_N/                              the batch the trainer's step N consumes
    broadcasts/step_N/                            policy N (weights after N trained steps) for the inference server
    checkpoints/step_N/{trainer,orchestrator}/    state after N trained steps (the next step to train is N)
    weights/step_N/                               HF export loadable by `from_pretrained`
    eval/                                         `eval` results and the server it started
    wandb/<process>/                              W&B's local files of the process's run (`[wandb]`)

Every step directory is filled under a temporary name and renamed, with a `STABLE` marker last (`utils/fs.py`);
scans count only STABLE ones. Resume (docs/resume.md): `-1` is the trainer's latest complete checkpoint S (its
consumed steps are the source of truth) and every process that resumes must hold a complete checkpoint of S. From
S, `rollouts/step_{>=S}`, `broadcasts/step_{>S}` and `checkpoints/step_{>S}` are deleted, metrics records of steps
>= S move to `metrics/discarded.jsonl`, and `rl` also removes the temporary directories of killed writers.
"""

from __future__ import annotations

import contextlib
import json
import shutil
from pathlib import Path
from typing import Literal

from prime_rl.utils.fs import atomic_write_text, is_stable, is_temp

Part = Literal["trainer", "orchestrator"]
PARTS: tuple[Part, ...] = ("trainer", "orchestrator")
STEP_KINDS = ("rollouts", "broadcasts", "checkpoints", "weights")


class ResumeError(FileNotFoundError):
    """The requested resume step has no complete checkpoint; the message names the directory."""


def step_dirs(root: Path, stable_only: bool = True) -> dict[int, Path]:
    """`{N: root/step_N}` for every (STABLE) step directory under `root`, ascending."""
    out = {}
    if root.is_dir():
        for child in root.iterdir():
            if child.name.startswith("step_") and child.name[5:].isdigit() and (not stable_only or is_stable(child)):
                out[int(child.name[5:])] = child
    return dict(sorted(out.items()))


def keep_last(root: Path, n: int, protect: set[int] = frozenset()) -> None:
    """Deletes all but the newest `n` step directories under `root` (never one in `protect`)."""
    steps = sorted(step_dirs(root, stable_only=False))
    for step in steps[: max(len(steps) - n, 0)]:
        if step not in protect:
            shutil.rmtree(root / f"step_{step}", ignore_errors=True)


class RunDir:
    """Paths, complete-step scans and the resume/discard rules of one run directory."""

    def __init__(self, output_dir: Path | str):
        self.root = Path(output_dir)
        self.configs = self.root / "configs"
        self.logs = self.root / "logs"
        self.metrics_dir = self.root / "metrics"
        self.rollouts = self.root / "rollouts"
        self.broadcasts = self.root / "broadcasts"
        self.checkpoints = self.root / "checkpoints"
        self.weights = self.root / "weights"
        self.eval = self.root / "eval"
        self.lock = self.root / "rl.lock"

    def config(self, process: str) -> Path:
        return self.configs / f"{process}.toml"

    def log(self, process: str) -> Path:
        return self.logs / f"{process}.log"

    def metrics(self, process: str) -> Path:
        return self.metrics_dir / f"{process}.jsonl"

    @property
    def discarded_metrics(self) -> Path:
        return self.metrics_dir / "discarded.jsonl"

    @property
    def plot(self) -> Path:
        return self.metrics_dir / "plot.png"

    @property
    def eval_results(self) -> Path:
        return self.eval / "results.json"

    def wandb(self, process: str) -> Path:
        """The `dir` given to `wandb.init` by `process` (W&B writes `wandb/<run>/` under it)."""
        return self.root / "wandb" / process

    def eval_server(self, suffix: str) -> Path:
        """The config (`.toml`) or log (`.log`) of the inference server `eval` started."""
        return self.eval / f"inference{suffix}"

    def rollout(self, step: int) -> Path:
        return self.rollouts / f"step_{step}"

    def broadcast(self, step: int) -> Path:
        return self.broadcasts / f"step_{step}"

    def checkpoint(self, step: int, part: Part) -> Path:
        return self.checkpoints / f"step_{step}" / part

    def export(self, step: int) -> Path:
        return self.weights / f"step_{step}"

    def latest_broadcast(self) -> int | None:
        """The newest complete (STABLE) broadcast policy."""
        return max(step_dirs(self.broadcasts), default=None)

    def checkpoint_steps(self, part: Part) -> list[int]:
        """Steps with a complete (STABLE) checkpoint of `part`, ascending."""
        steps = step_dirs(self.checkpoints, stable_only=False)
        return [step for step, path in steps.items() if is_stable(path / part)]

    def resume_step(self, requested: int | None, parts: tuple[Part, ...] = PARTS) -> int | None:
        """None: a fresh start. N, or for -1 the trainer's latest complete checkpoint (the latest of `parts[0]` when
        this directory holds none of the trainer's and it does not resume); each of `parts` must be complete there.
        Raises ResumeError naming the missing directory."""
        if requested is None:
            return None
        step = requested
        if requested == -1:
            source = "trainer" if "trainer" in parts or self.checkpoint_steps("trainer") else parts[0]
            step = max(self.checkpoint_steps(source), default=None)
            if step is None:
                raise ResumeError(
                    f"`ckpt.resume_step` = -1 but {self.checkpoints} holds no complete {source} checkpoint"
                )
        for part in parts:
            complete = self.checkpoint_steps(part)
            if step not in complete:
                raise ResumeError(
                    f"`ckpt.resume_step` = {requested}: no complete {part} checkpoint {self.checkpoint(step, part)} "
                    f"(complete: {complete or 'none'})"
                )
        return step

    def prune_checkpoints(self, part: Part, keep: int | None) -> None:
        """Deletes `part`'s complete checkpoints beyond the newest `keep`; the orchestrator's at or after the
        trainer's latest stay (a resume needs them: the orchestrator checkpoints a step before the trainer can)."""
        if keep is None:
            return
        trainer_latest = max(self.checkpoint_steps("trainer"), default=None)
        for step in self.checkpoint_steps(part)[:-keep]:
            if part == "orchestrator" and trainer_latest is not None and step >= trainer_latest:
                continue
            shutil.rmtree(self.checkpoint(step, part), ignore_errors=True)
            # Fails while the other process's part is still there (or when it removed the directory first).
            with contextlib.suppress(OSError):
                self.checkpoint(step, part).parent.rmdir()

    def discard_after(self, step: int, checkpoints: bool = True) -> list[Path]:
        """Deletes `rollouts/step_{>=step}`, `broadcasts/step_{>step}` and (with `checkpoints`)
        `checkpoints/step_{>step}`, complete or not; returns what it deleted."""
        stale = [p for s, p in step_dirs(self.rollouts, stable_only=False).items() if s >= step]
        for root in (self.broadcasts, self.checkpoints) if checkpoints else (self.broadcasts,):
            stale += [p for s, p in step_dirs(root, stable_only=False).items() if s > step]
        for path in stale:
            shutil.rmtree(path, ignore_errors=True)
        return stale

    def remove_temp(self) -> list[Path]:
        """Deletes the temporary files and directories of writers that were killed (a full weight copy each).
        Only safe while no process of the run is running: `rl` calls it before starting them."""
        roots = [self.root / kind for kind in STEP_KINDS] + [self.configs, self.metrics_dir]
        roots += list(step_dirs(self.checkpoints, stable_only=False).values())
        stale = [p for root in roots if root.is_dir() for p in root.iterdir() if is_temp(p)]
        for path in stale:
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
        return stale

    def rewind_metrics(self, step: int, processes: tuple[str, ...] = PARTS) -> int:
        """Moves the records of steps >= `step` out of `metrics/<process>.jsonl` into `metrics/discarded.jsonl`
        (tagged with their file); returns how many moved. A half-written last line (killed mid-write) is dropped."""
        moved = 0
        for process in processes:
            path = self.metrics(process)
            if not path.is_file():
                continue
            lines = path.read_text().splitlines()
            kept, discarded = [], []
            for line in lines:
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    continue
                (kept if record.get("step", -1) < step else discarded).append(record)
            if not discarded and len(kept) == len(lines):
                continue
            with self.discarded_metrics.open("a") as f:
                for record in discarded:
                    f.write(json.dumps({"file": path.name, "resumed_from": step, **record}) + "\n")
            atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in kept))
            moved += len(discarded)
        return moved

    def clear_for_fresh_start(self, clean: bool) -> None:
        """A fresh run never reads an earlier run's batches or policies; with `clean` its metrics and logs go too
        (its checkpoints are kept)."""
        for path in (self.rollouts, self.broadcasts, *((self.metrics_dir, self.logs) if clean else ())):
            shutil.rmtree(path, ignore_errors=True)

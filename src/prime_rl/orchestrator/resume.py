"""The resume rule (docs/resume.md): on resume from step S, everything produced after the checkpoint is discarded.

`rollouts/step_{>=S}` were generated for the lost part of the run and `broadcasts/step_{>S}` hold policies whose
training was lost; the trainer (resuming at S) and the orchestrator (resuming its checkpoint of S) rebuild them.
`checkpoints/step_{>S}` (only there when resuming from an earlier step on purpose) belong to the abandoned history.
`rl` applies the rule before it starts any process, so no process can read a stale file; the orchestrator applies
it again at start-up (a no-op under `rl`) for runs started by hand. Metrics records of steps >= S move to
`metrics/discarded.jsonl`, so `metrics/*.jsonl` describe the one history that led to the final weights.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

from prime_rl.transport.types import TrainingBatch, encode_batch
from prime_rl.utils.fs import atomic_write_text, step_dirs

METRICS_FILES = ("trainer.jsonl", "orchestrator.jsonl")
DISCARDED = "discarded.jsonl"


def batch_digest(batch: TrainingBatch) -> str:
    """A short content hash of a batch: the trainer logs the digest of what it trained, the orchestrator of what it
    wrote, so the metrics prove which batch each step trained."""
    return hashlib.sha256(encode_batch(batch)).hexdigest()[:16]


def discard_after(output_dir: Path, step: int, checkpoints: bool = True) -> list[Path]:
    """Deletes `rollouts/step_{>=step}`, `broadcasts/step_{>step}` and (with `checkpoints`) `checkpoints/step_{>step}`
    (complete or not; later checkpoints exist only when resuming from an earlier one on purpose); returns what it
    deleted."""
    output_dir = Path(output_dir)
    stale = [p for s, p in step_dirs(output_dir / "rollouts", stable_only=False).items() if s >= step]
    for name in ("broadcasts", "checkpoints") if checkpoints else ("broadcasts",):
        stale += [p for s, p in step_dirs(output_dir / name, stable_only=False).items() if s > step]
    for path in stale:
        shutil.rmtree(path, ignore_errors=True)
    return stale


def rewind_metrics(metrics_dir: Path, step: int, names: tuple[str, ...] = METRICS_FILES) -> int:
    """Moves the records of steps >= `step` out of `metrics_dir/<name>` into `metrics_dir/discarded.jsonl` (tagged
    with their file); returns how many moved. A half-written last line (killed mid-write) is dropped."""
    moved = 0
    for name in names:
        path = Path(metrics_dir) / name
        if not path.is_file():
            continue
        kept, discarded = [], []
        for line in path.read_text().splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            (kept if record.get("step", -1) < step else discarded).append(record)
        if not discarded and len(kept) == len(path.read_text().splitlines()):
            continue
        with (Path(metrics_dir) / DISCARDED).open("a") as f:
            for record in discarded:
                f.write(json.dumps({"file": name, "resumed_from": step, **record}) + "\n")
        atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in kept))
        moved += len(discarded)
    return moved

"""The exactly-once record of an `rl` run (docs/resume.md): what its trainer and orchestrator metrics say about which
batch each step trained."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from prime_rl.run_dir import RunDir
from prime_rl.utils.metrics import read_metrics


@dataclass(frozen=True)
class History:
    """What the metrics of a finished run say about exactly-once training; all four empty means every step
    `0..max_steps-1` was trained once, in order, on the batch the orchestrator wrote for it."""

    lost: list[int]
    """Steps no trainer record holds."""
    duplicated: list[int]
    """Trainer records of a step, or of a batch digest, seen before."""
    unordered: list[int]
    """Trainer or orchestrator records whose step is out of order or not below `max_steps`."""
    mismatched: list[int]
    """Steps whose trained digest is not the one digest the orchestrator logged for that step, and steps the
    orchestrator wrote a batch for that nothing trained."""


def read_history(output_dir: Path, max_steps: int) -> History:
    """Checks `metrics/{trainer,orchestrator}.jsonl` of a finished run against the exactly-once rule."""
    run = RunDir(output_dir)
    trainer = read_metrics(run.metrics("trainer"))
    batches = [r for r in read_metrics(run.metrics("orchestrator")) if "batch/digest" in r]
    steps, digests, duplicated = set(), set(), []
    for record in trainer:
        if record["step"] in steps or record["batch/digest"] in digests:
            duplicated.append(record["step"])
        steps.add(record["step"])
        digests.add(record["batch/digest"])
    written: dict[int, list[str]] = {}
    for record in batches:
        written.setdefault(record["step"], []).append(record["batch/digest"])
    mismatched = [r["step"] for r in trainer if written.get(r["step"]) != [r["batch/digest"]]]
    return History(
        lost=sorted(set(range(max_steps)) - steps),
        duplicated=duplicated,
        unordered=[*_unordered([r["step"] for r in trainer], max_steps), *_unordered(list(written), max_steps)],
        mismatched=sorted(set(mismatched) | (set(written) - steps)),
    )


def _unordered(steps: list[int], max_steps: int) -> list[int]:
    return [s for i, s in enumerate(steps) if s >= max_steps or (i > 0 and s <= steps[i - 1])]

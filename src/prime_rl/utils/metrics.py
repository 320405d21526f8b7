"""Metrics: summary statistics of per-sequence/per-token values and a JSONL writer (one line per step).

Generic on purpose (trainer and orchestrator share it) and free of torch: values may be numbers, lists, or
anything with `.tolist()` (tensors, arrays).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from prime_rl.utils.wandb_logging import active_run


def _floats(values: Any) -> list[float]:
    if hasattr(values, "tolist"):
        values = values.tolist()
    if isinstance(values, int | float):
        return [float(values)]
    out: list[float] = []
    for v in values:
        out.extend(_floats(v) if isinstance(v, Iterable) or hasattr(v, "tolist") else [float(v)])
    return out


def summarize(values: Any) -> dict[str, float]:
    """`{mean, std, min, max}` of the values (population std); NaN for all four when there are none."""
    xs = _floats(values)
    if not xs:
        nan = float("nan")
        return {"mean": nan, "std": nan, "min": nan, "max": nan}
    mean = sum(xs) / len(xs)
    std = math.sqrt(sum((x - mean) ** 2 for x in xs) / len(xs))
    return {"mean": mean, "std": std, "min": min(xs), "max": max(xs)}


def aggregate(metrics: Mapping[str, Any], prefix: str = "") -> dict[str, float]:
    """`{prefix}{name}/{mean,std,min,max}` for every metric in the mapping."""
    return {f"{prefix}{name}/{stat}": v for name, values in metrics.items() for stat, v in summarize(values).items()}


class MetricsWriter:
    """Appends one JSON object per step to a JSONL file: `{"step": N, "time": unix_seconds, **metrics}`, and logs
    the record to this process's W&B run when one was set up (`utils/wandb_logging.py`)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def write(self, step: int, metrics: Mapping[str, Any]) -> None:
        record = {"step": step, "time": round(time.time(), 3)}
        record.update({k: _jsonable(v) for k, v in metrics.items()})
        line = json.dumps(record, allow_nan=True) + "\n"
        # A single write of one line in append mode: readers never see half of an earlier step.
        with self.path.open("a") as f:
            f.write(line)
            f.flush()
        if (run := active_run()) is not None:
            run.log(step, metrics)


def _jsonable(value: Any) -> Any:
    if hasattr(value, "tolist"):
        value = value.tolist()
    if isinstance(value, int | float | str | bool) or value is None:
        return value
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, Iterable):
        return [_jsonable(v) for v in value]
    return str(value)


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """All records of a metrics JSONL file, in order."""
    with Path(path).open() as f:
        return [json.loads(line) for line in f if line.strip()]

"""Evaluation results: the JSON document written to `output_dir/eval/results.json` and the printed table."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from prime_rl.eval.config import EvalConfig
from prime_rl.eval.metrics import k_values
from prime_rl.utils.fs import atomic_write_text


def results_document(config: EvalConfig, results: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """`results` maps a policy label (`base`, `step_N`) to `{policy_step, weight_dir, metrics}`."""
    return {
        "model": config.model.name,
        "weights_dir": None if config.weights_dir is None else str(config.weights_dir),
        "rollouts_per_example": config.rollouts_per_example,
        "pass_threshold": config.pass_threshold,
        "sampling": config.sampling.model_dump(mode="json"),
        "results": results,
    }


def write_results(path: Path, document: dict[str, Any]) -> Path:
    atomic_write_text(path, json.dumps(document, indent=2) + "\n")
    return path


def format_table(columns: list[str], rows: list[list[str]]) -> str:
    """Columns separated by `|`, the first two left-aligned (labels), the others right-aligned (numbers)."""
    widths = [max(len(str(r[i])) for r in [columns, *rows]) for i in range(len(columns))]

    def line(cells: list[str]) -> str:
        return " | ".join(
            c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        )

    return "\n".join([line(columns), "-+-".join("-" * w for w in widths), *(line(r) for r in rows)])


def results_table(results: dict[str, dict[str, Any]], env_names: list[str], n: int) -> str:
    """One row per (policy, environment): avg@n, pass@1, pass@n, mean completion length, truncated, errored."""
    passes = list(dict.fromkeys([f"pass@{k_values(n)[0]}", f"pass@{n}"]))
    columns = ["policy", "env", f"avg@{n}", *passes, "len", "truncated", "errored"]
    rows = []
    for label, entry in results.items():
        m = entry["metrics"]
        for env in env_names:
            values = [m[f"{env}/{c}"] for c in [f"avg@{n}", *passes]]
            rows.append(
                [
                    label,
                    env,
                    *(f"{v:.4f}" for v in values),
                    f"{m[f'{env}/completion_len']:.1f}",
                    f"{m[f'{env}/truncated']:.2f}",
                    f"{m[f'{env}/errored']:.2f}",
                ]
            )
    return format_table(columns, rows)


def rubric_table(results: dict[str, dict[str, Any]], env_names: list[str]) -> str | None:
    """One row per (policy, environment): the mean of each rubric function (weighted or logged only); None when no
    environment logs more than one (the reward column of `results_table` already shows it)."""
    means = {
        (label, env): {k.split("/", 2)[2]: v for k, v in entry["metrics"].items() if k.startswith(f"{env}/reward/")}
        for label, entry in results.items()
        for env in env_names
    }
    if all(len(row) < 2 for row in means.values()):
        return None
    columns = list(dict.fromkeys(name for row in means.values() for name in row))
    rows = [
        [label, env, *(f"{row[c]:.4f}" if c in row else "-" for c in columns)] for (label, env), row in means.items()
    ]
    return format_table(["policy", "env", *columns], rows)


def eval_records(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The `[orchestrator.eval]` records of a run's `metrics/orchestrator.jsonl`, in order."""
    return [r for r in records if "eval/policy" in r]


def eval_series(record: dict[str, Any]) -> dict[tuple[str, str], float]:
    """`{(env, metric): value}` of one eval record: `avg@k` as `reward (avg@k)`, and each rubric function."""
    out = {}
    for key, value in record.items():
        if not key.startswith("eval/") or key.count("/") < 2:
            continue
        env, metric = key[len("eval/") :].split("/", 1)
        if metric.startswith("avg@"):
            out[(env, f"reward ({metric})")] = value
        elif metric.startswith("reward/"):
            out[(env, metric[len("reward/") :])] = value
    return out


def before_after_table(records: list[dict[str, Any]]) -> str | None:
    """The first and the last evaluation of a run side by side (per environment: reward and every rubric
    function, before, after, change); None with fewer than two evaluations."""
    evals = eval_records(records)
    if len(evals) < 2:
        return None
    before, after = eval_series(evals[0]), eval_series(evals[-1])
    columns = ["env", "metric", f"policy {evals[0]['eval/policy']}", f"policy {evals[-1]['eval/policy']}", "change"]
    rows = [
        [env, metric, f"{before[env, metric]:.3f}", f"{after[env, metric]:.3f}", f"{after[env, metric] - value:+.3f}"]
        for (env, metric), value in before.items()
        if (env, metric) in after
    ]
    return format_table(columns, rows)

"""The `plot` figure: reward, rubric metrics, evaluations, loss, mismatch KL and throughput per step from
`metrics/{orchestrator,trainer}.jsonl`; with two or more evaluations, the before/after table is printed too."""

from __future__ import annotations

from pathlib import Path

from matplotlib.figure import Figure

from prime_rl.eval.report import before_after_table, eval_records, eval_series
from prime_rl.run_dir import RunDir
from prime_rl.utils.config import RunError
from prime_rl.utils.metrics import read_metrics
from prime_rl.utils.plot import PlotConfig

PANELS = (
    ("Reward", "orchestrator", ("reward/mean",)),
    ("Loss", "trainer", ("loss",)),
    ("Mismatch KL", "trainer", ("mismatch_kl/mean",)),
    ("Throughput (tokens/s)", "both", ("perf/gen_tokens_per_s", "perf/throughput")),
)


def _series(records: list[dict], key: str) -> tuple[list[int], list[float]]:
    points = [(r["step"], r[key]) for r in records if isinstance(r.get(key), int | float)]
    return [p[0] for p in points], [float(p[1]) for p in points]


def _moving_average(values: list[float], window: int) -> list[float]:
    return [
        sum(values[max(0, i - window + 1) : i + 1]) / len(values[max(0, i - window + 1) : i + 1])
        for i in range(len(values))
    ]


def load_metrics(output_dir: Path) -> dict[str, list[dict]]:
    run = RunDir(output_dir)
    out = {}
    for name in ("orchestrator", "trainer"):
        path = run.metrics(name)
        out[name] = read_metrics(path) if path.is_file() else []
    if not out["orchestrator"] and not out["trainer"]:
        raise RunError(f"no metrics under {run.metrics_dir} (orchestrator.jsonl, trainer.jsonl)")
    return out


def _plot_rubric(ax, records: list[dict]) -> None:
    """Every reward function's per-step mean (`rubric/<env>/<fn>/mean`)."""
    keys = dict.fromkeys(k for r in records for k in r if k.startswith("rubric/") and k.endswith("/mean"))
    for key in keys:
        steps, values = _series(records, key)
        ax.plot(steps, values, marker="o", markersize=3, label=key[len("rubric/") : -len("/mean")])
    ax.set_title("Rubric metrics (training rollouts)")
    ax.set_xlabel("step")


def _plot_evals(ax, records: list[dict]) -> None:
    """Each evaluation's reward and rubric means per environment, at x = the policy evaluated."""
    series: dict[tuple[str, str], tuple[list[int], list[float]]] = {}
    for record in eval_records(records):
        for key, value in eval_series(record).items():
            series.setdefault(key, ([], []))
            series[key][0].append(record["eval/policy"])
            series[key][1].append(value)
    for (env, metric), (policies, values) in series.items():
        ax.plot(policies, values, marker="s", markersize=5, label=f"{env} {metric}")
    ax.set_title("Evaluation")
    ax.set_xlabel("policy (steps trained)")


def plot(output_dir: Path, out: Path, title: str | None = None, smooth: int = 1) -> Path:
    metrics = load_metrics(output_dir)
    fig = Figure(figsize=(15, 7))  # no pyplot: no GUI backend, no global figure state
    axes = fig.subplots(2, 3)
    _plot_rubric(axes[0, 1], metrics["orchestrator"])
    _plot_evals(axes[0, 2], metrics["orchestrator"])
    for ax in axes[0, 1:]:
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=7)
    for ax, (label, source, keys) in zip([axes[0, 0], *axes[1]], PANELS, strict=True):
        sources = ("orchestrator", "trainer") if source == "both" else (source,)
        for name in sources:
            for key in keys:
                steps, values = _series(metrics[name], key)
                if steps:
                    ax.plot(steps, values, marker="o", markersize=3, label=f"{name} {key}")
                    if smooth > 1:
                        ax.plot(steps, _moving_average(values, smooth), linewidth=2, label=f"{key} ({smooth}-step avg)")
        ax.set_title(label)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=7)
    fig.suptitle(title or str(output_dir))
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    return out


def plot_run(config: PlotConfig) -> None:
    """The `plot` command: writes the PNG and prints its path, then the before/after evaluation table (if any)."""
    print(plot(config.output_dir, config.out or RunDir(config.output_dir).plot, config.title, config.smooth))
    table = before_after_table(load_metrics(config.output_dir)["orchestrator"])
    if table is not None:
        print(table)

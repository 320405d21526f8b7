"""The `plot` figure: reward, loss, mismatch KL and throughput per step from `metrics/{orchestrator,trainer}.jsonl`."""

from __future__ import annotations

from pathlib import Path

from matplotlib.figure import Figure

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


def plot(output_dir: Path, out: Path, title: str | None = None, smooth: int = 1) -> Path:
    metrics = load_metrics(output_dir)
    fig = Figure(figsize=(11, 7))  # no pyplot: no GUI backend, no global figure state
    axes = fig.subplots(2, 2)
    for ax, (label, source, keys) in zip(axes.flat, PANELS, strict=True):
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
    """The `plot` command: writes the PNG and prints its path."""
    print(plot(config.output_dir, config.out or RunDir(config.output_dir).plot, config.title, config.smooth))

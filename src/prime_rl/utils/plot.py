"""`plot`: one PNG of reward, loss, mismatch KL and throughput per step from `metrics/{orchestrator,trainer}.jsonl`."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from prime_rl.utils.config import BaseSettingsConfig, cli

PANELS = (
    ("Reward", "orchestrator", ("reward/mean",)),
    ("Loss", "trainer", ("loss",)),
    ("Mismatch KL", "trainer", ("mismatch_kl/mean",)),
    ("Throughput (tokens/s)", "both", ("perf/gen_tokens_per_s", "perf/throughput")),
)


class PlotConfig(BaseSettingsConfig):
    """Plots the metrics of a run directory into a PNG."""

    output_dir: Path = Path("outputs")
    """Run directory holding `metrics/`."""
    out: Path | None = None
    """PNG to write (default: `<output_dir>/metrics/plot.png`)."""
    title: str | None = None
    """Figure title (default: the run directory)."""
    smooth: int = Field(1, ge=1)
    """Also draw a moving average over this many steps (1: none)."""


def _series(records: list[dict], key: str) -> tuple[list[int], list[float]]:
    points = [(r["step"], r[key]) for r in records if isinstance(r.get(key), int | float)]
    return [p[0] for p in points], [float(p[1]) for p in points]


def _moving_average(values: list[float], window: int) -> list[float]:
    return [
        sum(values[max(0, i - window + 1) : i + 1]) / len(values[max(0, i - window + 1) : i + 1])
        for i in range(len(values))
    ]


def load_metrics(output_dir: Path) -> dict[str, list[dict]]:
    from prime_rl.utils.metrics import read_metrics

    out = {}
    for name in ("orchestrator", "trainer"):
        path = Path(output_dir) / "metrics" / f"{name}.jsonl"
        out[name] = read_metrics(path) if path.is_file() else []
    if not out["orchestrator"] and not out["trainer"]:
        raise FileNotFoundError(f"no metrics under {Path(output_dir) / 'metrics'} (orchestrator.jsonl, trainer.jsonl)")
    return out


def plot(output_dir: Path, out: Path, title: str | None = None, smooth: int = 1) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = load_metrics(output_dir)
    fig, axes = plt.subplots(2, 2, figsize=(11, 7))
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
    plt.close(fig)
    return out


def main(argv: list[str] | None = None) -> None:
    config = cli(PlotConfig, "plot", argv)
    out = config.out or config.output_dir / "metrics" / "plot.png"
    try:
        print(plot(config.output_dir, out, config.title, config.smooth))
    except FileNotFoundError as e:
        raise SystemExit(f"plot: error: {e}") from None


if __name__ == "__main__":
    main()

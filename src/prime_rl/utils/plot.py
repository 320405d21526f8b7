"""`plot`: parses the config, then imports and runs the plotting (`plotting.py`, matplotlib): one PNG of reward,
rubric metrics, evaluations, loss, mismatch KL and throughput per step of a run, and the before/after table of its
first and last evaluation."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from prime_rl.utils.config import BaseSettingsConfig, run_cli


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


def main(argv: list[str] | None = None) -> None:
    run_cli("plot", PlotConfig, "prime_rl.utils.plotting:plot_run", argv)


if __name__ == "__main__":
    main()

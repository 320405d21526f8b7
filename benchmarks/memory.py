"""Peak resident memory of the whole `rl` process tree on the main example (`make run`: examples/one_word/rl.toml),
against the same example run from the sources of a baseline git revision (default `1608c59`, the tree before the
memory levers of issue 13), both in this invocation, one after the other.

    python benchmarks/memory.py [--max-steps 10] [--baseline-rev 1608c59] [--no-baseline] [--rounds N] [--env KEY=VALUE]

The RSS of `rl` and every descendant (inference, orchestrator, trainer and any children) is sampled every 0.5 s; a
process's peak is the largest RSS seen, and the tree's peak is the largest sum over one sample. Seconds per step are
the mean orchestrator step time (`time/step` in metrics/orchestrator.jsonl) after the first step (which also waits for
the first weights). Prints a per-process table for each run (each process's own peak, and its RSS in the sample
where the tree peaked) and, last,
`rl_peak_rss: X GiB (baseline: Y GiB, ratio: R.RRx)` (ratio = baseline / ours) and the seconds-per-step ratio line.
With `--rounds N` the two trees alternate N times and the last lines give each side's median over its N runs: the
tree's peak depends on when the processes' peaks meet, and a step's time on what else the machine runs.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from prime_rl.utils.net import free_port

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "one_word" / "rl.toml"
ROLES = ("inference", "orchestrator", "trainer")
GIB = 1024**3


@dataclass
class TreeSample:
    """Peaks of one sampled process tree: per role (the largest RSS of that role's processes summed) and in total."""

    peak_total: int = 0
    peak_by_role: dict[str, int] = field(default_factory=dict)
    at_peak: dict[str, int] = field(default_factory=dict)
    """Each role's RSS in the sample where the tree peaked (the peaks of the roles need not meet)."""
    samples: list[dict[str, int]] = field(default_factory=list)
    """Every sample's RSS per role (for `--trace`)."""


def _role(proc: psutil.Process, root_pid: int) -> str:
    if proc.pid == root_pid:
        return "rl"
    cmdline = " ".join(proc.cmdline())
    for role in ROLES:
        if f"sys.argv[0] = '{role}'" in cmdline or f"prime_rl.{role}" in cmdline:
            return role
    return "other"


def sample_tree(root: psutil.Process, peaks: TreeSample) -> None:
    """Adds one sample of `root` and its descendants to `peaks`."""
    by_role: dict[str, int] = {}
    try:
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return
    for proc in procs:
        try:
            rss, role = proc.memory_info().rss, _role(proc, root.pid)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
        by_role[role] = by_role.get(role, 0) + rss
    peaks.samples.append(by_role)
    if sum(by_role.values()) > peaks.peak_total:
        peaks.peak_total, peaks.at_peak = sum(by_role.values()), by_role
    for role, rss in by_role.items():
        peaks.peak_by_role[role] = max(peaks.peak_by_role.get(role, 0), rss)


def seconds_per_step(output_dir: Path) -> float:
    """Mean orchestrator step time after its first step."""
    lines = (output_dir / "metrics" / "orchestrator.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines if line.strip()]
    times = [r["time/step"] for r in records if "time/step" in r]  # eval records have no step time
    times = times[1:] or times
    return sum(times) / len(times)


def run(
    source: Path, max_steps: int, interval: float = 0.5, extra_env: dict[str, str] | None = None
) -> tuple[TreeSample, float]:
    """Runs the example with the sources under `source/src` first on the path (and `extra_env` in its environment);
    returns peaks and seconds per step."""
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "prime_rl.rl", "@", str(EXAMPLE), "--output-dir", tmp,
               "--max-steps", str(max_steps), "--inference.server.port", str(free_port())]  # fmt: skip
        env = dict(
            os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(source / "src"), os.environ.get("PYTHONPATH")]))
        )
        env.update(extra_env or {})
        with open(Path(tmp).parent / f"memory-{os.getpid()}.log", "w") as log:
            proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=tmp)
            root, peaks = psutil.Process(proc.pid), TreeSample()
            while proc.poll() is None:
                sample_tree(root, peaks)
                time.sleep(interval)
        if proc.returncode != 0:
            raise RuntimeError(f"rl from {source} failed with code {proc.returncode}: see {log.name}")
        return peaks, seconds_per_step(Path(tmp))


def print_table(label: str, peaks: TreeSample, step_s: float) -> None:
    print(f"{label}: RSS per process (GiB), {step_s:.2f} s/step")
    print(f"  {'':<13} {'peak':>6} {'at tree peak':>13}")
    for role in ("rl", *ROLES, "other"):
        if role in peaks.peak_by_role:
            at_peak = peaks.at_peak.get(role, 0) / GIB
            print(f"  {role:<13} {peaks.peak_by_role[role] / GIB:6.2f} {at_peak:13.2f}")
    print(f"  {'tree (peak)':<13} {peaks.peak_total / GIB:6.2f}", flush=True)


def export_revision(rev: str, dest: Path) -> Path:
    """The `src/` tree of git revision `rev` under `dest`."""
    archive = subprocess.run(["git", "-C", str(REPO), "archive", rev, "src"], check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    return dest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-steps", type=int, default=10, help="shorter runs for iteration; the figure is for 10")
    parser.add_argument("--baseline-rev", default="1608c59")
    parser.add_argument("--no-baseline", action="store_true")
    parser.add_argument("--rounds", type=int, default=1, help="alternates this tree and the baseline this many times")
    parser.add_argument("--trace", type=Path, help="writes this tree's samples (RSS per role, bytes) as JSON lines")
    parser.add_argument("--env", action="append", default=[], help="KEY=VALUE in this tree's environment (repeatable)")
    args = parser.parse_args()
    extra_env = dict(item.split("=", 1) for item in args.env)
    print(f"load average before: {os.getloadavg()}", flush=True)
    ours: list[tuple[TreeSample, float]] = []
    base: list[tuple[TreeSample, float]] = []
    with tempfile.TemporaryDirectory() as tmp:
        base_source = None if args.no_baseline else export_revision(args.baseline_rev, Path(tmp))
        for i in range(args.rounds):
            ours.append(run(REPO, args.max_steps, extra_env=extra_env))
            print_table(f"this tree, round {i + 1}", *ours[-1])
            if args.trace and i == 0:
                args.trace.write_text("".join(json.dumps(s) + "\n" for s in ours[0][0].samples))
            if base_source is not None:
                base.append(run(base_source, args.max_steps))
                print_table(f"baseline {args.baseline_rev}, round {i + 1}", *base[-1])
    print(f"load average after: {os.getloadavg()}")
    ours_peak, ours_s = median_of(ours)
    if not base:
        print(f"rl_peak_rss: {ours_peak / GIB:.2f} GiB")
        return
    base_peak, base_s = median_of(base)
    print(f"seconds_per_step: {ours_s:.2f} s (baseline: {base_s:.2f} s, ratio: {ours_s / base_s:.2f}x)")
    ratio = base_peak / ours_peak
    print(f"rl_peak_rss: {ours_peak / GIB:.2f} GiB (baseline: {base_peak / GIB:.2f} GiB, ratio: {ratio:.2f}x)")


def median_of(runs: list[tuple[TreeSample, float]]) -> tuple[float, float]:
    """The median tree peak (bytes) and the median seconds per step over `runs`."""
    return statistics.median(p.peak_total for p, _ in runs), statistics.median(s for _, s in runs)


if __name__ == "__main__":
    main()

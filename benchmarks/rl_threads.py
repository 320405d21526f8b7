"""Thread split of `rl` on a small machine: wall-clock seconds of `rl` on the one-word example (model loading
included) for several (inference, trainer) torch thread counts, against torch's default (every process uses all
cores, so two compute processes oversubscribe the CPU).

    python benchmarks/rl_threads.py [--steps 3] [--splits 1,1 1,2] [--baseline-timeout 1800]

Prints one line per split; the last line compares the first split (what `rl` uses by default: half the cores each)
with the baseline. A baseline run that exceeds `--baseline-timeout` is stopped and reported at the timeout (so the
ratio is then a lower bound).
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from prime_rl.utils.net import free_port
from prime_rl.utils.threads import available_cores

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "one_word" / "rl.toml"


def run_seconds(steps: int, inference_threads: int, trainer_threads: int, timeout: float | None = None) -> float:
    """Wall-clock seconds of one `rl` run (capped at `timeout`, after which the run is stopped cleanly)."""
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "prime_rl.rl", "@", str(EXAMPLE), "--output-dir", tmp, "--max-steps", str(steps),
               "--inference.server.port", str(free_port()), "--inference.num-threads", str(inference_threads),
               "--trainer.num-threads", str(trainer_threads)]  # fmt: skip
        start = time.monotonic()
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            _, stderr = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGTERM)
            proc.communicate(timeout=60)
            return float(timeout)
        if proc.returncode != 0:
            raise RuntimeError(f"rl failed:\n{stderr[-3000:]}")
        return time.monotonic() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--splits", nargs="*", default=["1,1", "1,2"], help="inference,trainer thread counts")
    parser.add_argument("--baseline-timeout", type=float, default=1800.0)
    args = parser.parse_args()
    results = []
    for split in args.splits:
        inference, trainer = (int(x) for x in split.split(","))
        seconds = run_seconds(args.steps, inference, trainer)
        results.append(seconds)
        print(f"inference {inference} + trainer {trainer} threads: {seconds:.0f} s for {args.steps} steps", flush=True)
    cores = available_cores()
    baseline = run_seconds(args.steps, cores, cores, args.baseline_timeout)
    capped = " (stopped at the timeout)" if baseline >= args.baseline_timeout else ""
    print(f"torch default ({cores} + {cores} threads): {baseline:.0f} s for {args.steps} steps{capped}", flush=True)
    ours = results[0]
    print(f"rl_wall_time_{args.steps}_steps: {ours:.0f} s (baseline: {baseline:.0f} s, ratio: {baseline / ours:.2f}x)")


if __name__ == "__main__":
    main()

"""Which inference engine a user waits less for on CPU: the whole main example (what `make run` runs: `rl @
examples/one_word/rl.toml`, then `plot`), start-up and evaluations included, with `inference.engine = "hf"` (the
baseline) and then `"vllm"`, one after the other in the same run; and a longer run, extrapolated from each run's
measured parts (stated as such in its line).

A run splits into a fixed part (process start-up, model loading, the base and final evaluations, `plot`) and
`max_steps` training steps. The step time is the median gap between consecutive trainer step records
(`metrics/trainer.jsonl`: the first step also waits for start-up; the median ignores a step slowed by another job's
burst); fixed = total - max_steps * step time; a run of N steps is extrapolated as fixed + N * step time, and so is
the example's own run (its `max_steps`) when `--steps` is lower (a loaded machine). Start-up is launch to the
server's first healthy `/health`.

vLLM must be installed (`make test-vllm` creates `.venv-vllm` with its CPU build): run this with
`.venv-vllm/bin/python`.

Usage: python benchmarks/engine_choice.py [--steps 10] [--long-steps 100] [--keep DIR] [--wait-pid PID]
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path

import httpx

from prime_rl.utils.metrics import read_metrics
from prime_rl.utils.net import free_port

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "one_word" / "rl.toml"
EXAMPLE_STEPS = tomllib.loads(EXAMPLE.read_text())["max_steps"]
"""The example's `max_steps`: what `make run` trains."""


@dataclass
class RunTimes:
    """Wall-clock seconds of one whole example run and its parts."""

    total: float
    startup: float
    evals: float
    step: float
    steps: int

    @property
    def fixed(self) -> float:
        return self.total - self.steps * self.step

    def extrapolate(self, steps: int) -> float:
        return self.fixed + steps * self.step


def wait_healthy(proc: subprocess.Popen, port: int, start: float) -> float:
    """Seconds from `start` to the server's first healthy `/health` (or NaN if `rl` exited before)."""
    while proc.poll() is None:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return time.perf_counter() - start
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    return math.nan


def run_example(engine: str, steps: int, output_dir: Path) -> RunTimes:
    """`rl` on the main example with `engine`, then `plot`, as `make run` does; the run's times."""
    port = free_port()
    cmd = [sys.executable, "-m", "prime_rl.rl", "@", str(EXAMPLE), "--output-dir", str(output_dir),
           "--max-steps", str(steps), "--inference.engine", engine, "--inference.server.port", str(port),
           "--health-timeout", "1800"]  # fmt: skip
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": os.environ.get("VLLM_CPU_KVCACHE_SPACE", "2")}
    log = (output_dir.parent / f"{engine}.console.log").open("w")
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=REPO)
    startup = wait_healthy(proc, port, start)
    if proc.wait() != 0:
        raise RuntimeError(f"rl with engine {engine} failed (exit {proc.returncode}); see {log.name}")
    plot = [sys.executable, "-m", "prime_rl.utils.plot", "--output-dir", str(output_dir)]
    subprocess.run(plot, check=True, stdout=log, stderr=subprocess.STDOUT, cwd=REPO)
    return run_times(output_dir, time.perf_counter() - start, startup, steps)


def run_times(output_dir: Path, total: float, startup: float, steps: int) -> RunTimes:
    """The parts of a finished run from its metrics records (the step: the median gap between trainer records)."""
    trainer = [r["time"] for r in read_metrics(output_dir / "metrics/trainer.jsonl")]
    evals = sum(r["eval/time"] for r in read_metrics(output_dir / "metrics/orchestrator.jsonl") if "eval/time" in r)
    step = statistics.median(b - a for a, b in itertools.pairwise(trainer))
    return RunTimes(total=total, startup=startup, evals=evals, step=step, steps=steps)


def uptime() -> str:
    return "load average " + ", ".join(f"{x:.2f}" for x in os.getloadavg())


def report(times: dict[str, RunTimes], long_steps: int) -> list[str]:
    """The ratio lines: vLLM against the HF engine (the baseline)."""
    hf, vllm = times["hf"], times["vllm"]
    rows = [
        (f"example_{hf.steps}_steps", vllm.total, hf.total),
        ("startup", vllm.startup, hf.startup),
        ("evals", vllm.evals, hf.evals),
        ("fixed", vllm.fixed, hf.fixed),
        ("step", vllm.step, hf.step),
    ]
    for steps in sorted({EXAMPLE_STEPS, long_steps} - {hf.steps}):
        rows.append((f"example_{steps}_steps_extrapolated", vllm.extrapolate(steps), hf.extrapolate(steps)))
    lines = []
    for name, ours, base in rows:
        lines.append(f"engine_choice_{name}_vllm: {ours:.1f} s (baseline hf: {base:.1f} s, ratio: {ours / base:.2f}x)")
    if vllm.step < hf.step:
        even = (vllm.fixed - hf.fixed) / (hf.step - vllm.step)
        lines.append(f"engine_choice_break_even: vLLM is ahead from {max(0, math.ceil(even))} steps on (extrapolated)")
    else:
        lines.append("engine_choice_break_even: never (a vLLM step is not faster than an HF step)")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--steps", type=int, default=EXAMPLE_STEPS, help="max_steps of each run (default: the example's)"
    )
    parser.add_argument("--long-steps", type=int, default=100, help="length of the extrapolated longer run")
    parser.add_argument("--keep", type=Path, default=None, help="keep the runs here; a rerun reuses finished ones")
    parser.add_argument("--wait-pid", type=int, default=None, help="start the vLLM run once this process exited")
    args = parser.parse_args()
    root = args.keep or Path(tempfile.mkdtemp(prefix="engine_choice_"))
    root.mkdir(parents=True, exist_ok=True)
    times = {}
    for engine in ("hf", "vllm"):
        while engine == "vllm" and args.wait_pid and Path(f"/proc/{args.wait_pid}").exists():
            time.sleep(5)  # e.g. another vLLM server: two do not fit beside each other on a small machine
        saved = root / f"{engine}.times.json"
        if saved.is_file():  # a resumed benchmark (`--keep` of a run that failed later) keeps its finished runs
            times[engine] = t = RunTimes(**json.loads(saved.read_text()))
        else:
            print(f"[{engine}] start ({uptime()})", flush=True)
            times[engine] = t = run_example(engine, args.steps, root / engine)
            saved.write_text(json.dumps(dataclasses.asdict(t)))
        print(
            f"[{engine}] total {t.total:.1f} s: start-up {t.startup:.1f} s, evals {t.evals:.1f} s, "
            f"step {t.step:.1f} s, fixed {t.fixed:.1f} s ({uptime()})",
            flush=True,
        )
    for line in report(times, args.long_steps):
        print(line)


if __name__ == "__main__":
    main()

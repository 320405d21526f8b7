"""Switching the evaluated policy: `/update_weights` on one running server (what `eval` does) vs starting one server
per policy (the baseline), measured in the same run on the same weight directories.

Ours: time of `POST /update_weights` to a `weights/step_N` directory, median over `--switches` alternating
switches between two directories. Baseline: time from starting an inference server with `model.name = step_N` to
its first healthy `/health` (process start, imports, model load), median over `--starts` starts. Both serve the same
model files (SmolLM2-135M-Instruct by default, CPU, float32).

Usage: python benchmarks/eval_switch.py [--model smollm2-135m-instruct] [--threads 2] [--switches 6] [--starts 2]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import httpx

from prime_rl.eval.config import EvalConfig
from prime_rl.eval.server import inference_server
from prime_rl.utils.fs import STABLE
from prime_rl.utils.models import resolve_model_path


def make_run(model: str, root: Path) -> list[Path]:
    """`root/weights/step_{1,2}`: the model's files (hard links where possible) with a STABLE marker."""
    source = Path(resolve_model_path(model))
    steps = []
    for step in (1, 2):
        target = root / "weights" / f"step_{step}"
        try:
            shutil.copytree(source, target, copy_function=_link)
        except OSError:
            shutil.rmtree(target, ignore_errors=True)
            shutil.copytree(source, target)
        (target / STABLE).touch()
        steps.append(target)
    return steps


def _link(src: str, dst: str) -> None:
    Path(dst).hardlink_to(src)


def time_switches(config: EvalConfig, steps: list[Path], switches: int) -> list[float]:
    times = []
    with inference_server(config) as base_url, httpx.Client(timeout=600) as http:
        root = base_url.removesuffix("/v1")
        for i in range(switches):
            start = time.perf_counter()
            response = http.post(f"{root}/update_weights", json={"weight_dir": str(steps[i % 2])})
            times.append(time.perf_counter() - start)
            response.raise_for_status()
    return times


def time_starts(config: EvalConfig, step: Path, starts: int) -> list[float]:
    times = []
    for _ in range(starts):
        per_policy = config.model_copy(update={"model": config.model.model_copy(update={"name": str(step)})})
        start = time.perf_counter()
        with inference_server(per_policy):
            times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--threads", type=int, default=2, help="torch threads of the server")
    parser.add_argument("--switches", type=int, default=6, help="timed /update_weights calls")
    parser.add_argument("--starts", type=int, default=2, help="timed server starts")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="eval_switch_") as tmp:
        run = Path(tmp) / "run"
        steps = make_run(args.model, run)
        config = EvalConfig(
            model={"name": args.model},
            weights_dir=run,
            output_dir=Path(tmp) / "out",
            server={"num_threads": args.threads},
        )
        ours = statistics.median(time_switches(config, steps, args.switches))
        baseline = statistics.median(time_starts(config, steps[0], args.starts))
    print(f"policy switch /update_weights: median {ours:.2f}s over {args.switches}")
    print(f"policy switch by server restart: median {baseline:.2f}s over {args.starts}")
    print(f"eval_policy_switch: {ours:.2f} s (baseline: {baseline:.2f} s, ratio: {baseline / ours:.2f}x)")


if __name__ == "__main__":
    main()

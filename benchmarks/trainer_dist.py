"""FSDP2 data parallel vs one process: the same RL step (packing, logprobs, default loss, backward, AdamW) on
SmolLM2-135M, as 2 ranks x 1 thread (torchrun, gloo) and as 1 process x 2 threads, same batch, same cores.

Each side runs in its own subprocess(es): one warm-up step, then `--steps` timed steps (wall clock; the ranks of the
sharded side are timed from a barrier to a barrier). Reported: median tokens/s and the peak RSS of each rank. On a
2-core CPU the sharded side has no more compute than the single process and pays for the all-gathers and
reduce-scatters; the point is the path to GPUs, so no target is set.

    .venv/bin/python benchmarks/trainer_dist.py                     # 16 x 256 tokens
    .venv/bin/python benchmarks/trainer_dist.py --samples 4 --steps 1
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

from common import peak_rss_gib, run_side, setup_rl_step, timed_rl_steps


def run_steps(args, world=None) -> list[float]:
    import torch.distributed as dist

    from prime_rl.trainer.config import ParallelConfig, TrainerModelConfig
    from prime_rl.trainer.model import setup_model

    model = setup_model(TrainerModelConfig(name=args.model), ParallelConfig(), world)
    # The ranks of the sharded side are timed from a barrier to a barrier.
    sync = dist.barrier if world is not None else lambda: None
    return timed_rl_steps(args, setup_rl_step(model, lr=1e-6), time.perf_counter, sync=sync)


def child_single(args) -> None:
    from prime_rl.utils.threads import setup_threads

    setup_threads(2, "trainer", "threads of the single process")
    times = run_steps(args)
    print(json.dumps({"times": times, "peak_rss_gib": [peak_rss_gib()]}))


def child_dist(args) -> None:
    import torch.distributed as dist

    from prime_rl.trainer.parallel import setup_world
    from prime_rl.utils.threads import setup_threads

    setup_threads(1, "trainer", "threads of a rank")
    world = setup_world("cpu")
    times = run_steps(args, world)
    rss = [None] * world.size
    dist.all_gather_object(rss, peak_rss_gib())
    if world.is_main:
        print(json.dumps({"times": times, "peak_rss_gib": rss}))


def run_dist_side(side: str) -> dict:
    me = [__file__, "--side", side, *sys.argv[1:]]
    if side == "dist":
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2", *me]
    else:
        cmd = [sys.executable, *me]
    env = {**os.environ, "OMP_NUM_THREADS": "1" if side == "dist" else "2"}
    return run_side(side, cmd, env)


def parent(args) -> None:
    tokens = args.samples * args.sample_len
    results = {"single": run_dist_side("single"), "dist": run_dist_side("dist")}
    tps = {side: tokens / statistics.median(r["times"]) for side, r in results.items()}
    labels = {"single": "1 process x 2 threads", "dist": "2 ranks x 1 thread"}
    for side, r in results.items():
        steps = ", ".join(f"{t:.2f}" for t in r["times"])
        rss = ", ".join(f"{x:.2f}" for x in r["peak_rss_gib"])
        print(f"{labels[side]}: step times [{steps}] s, {tps[side]:.1f} tokens/s, peak RSS per rank [{rss}] GiB")
    ours, base = tps["dist"], tps["single"]
    print(f"trainer_dist_throughput: {ours:.1f} tokens/s (baseline: {base:.1f} tokens/s, ratio: {ours / base:.2f}x)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--samples", type=int, default=16, help="samples per step")
    parser.add_argument("--sample-len", type=int, default=256, help="tokens per sample")
    parser.add_argument("--micro-tokens", type=int, default=1024, help="tokens per micro-batch (trainer seq_len)")
    parser.add_argument("--steps", type=int, default=2, help="timed steps after one warm-up step")
    parser.add_argument("--side", choices=["single", "dist"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.side == "dist":
        child_dist(args)
    elif args.side == "single":
        child_single(args)
    else:
        parent(args)


if __name__ == "__main__":
    main()

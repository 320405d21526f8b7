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
import subprocess
import sys
import time


def run_steps(args, world=None) -> list[float]:
    import torch.distributed as dist

    from prime_rl.trainer.config import AdamWConfig, ConstantSchedulerConfig, ModelConfig, ParallelConfig
    from prime_rl.trainer.model import setup_model
    from prime_rl.trainer.optim import setup_optimizer
    from prime_rl.trainer.packing import pack_samples
    from prime_rl.trainer.rl.config import DataConfig, LossConfig
    from prime_rl.trainer.rl.data import FakeDataLoader
    from prime_rl.trainer.rl.loss import setup_loss_fn
    from prime_rl.trainer.scheduler import setup_scheduler
    from prime_rl.trainer.step import train_step

    model = setup_model(ModelConfig(name=args.model), ParallelConfig(), world)
    optim_config = AdamWConfig(lr=1e-6)
    optimizer = setup_optimizer(optim_config, model)
    scheduler = setup_scheduler(ConstantSchedulerConfig(), optimizer, None)
    loss_fn = setup_loss_fn(LossConfig())
    prompt_len = args.sample_len // 4
    data = FakeDataLoader(
        DataConfig(fake=True, fake_batch_size=args.samples, fake_prompt_len=prompt_len,
                   fake_completion_len=args.sample_len - prompt_len),
        vocab_size=model.config.vocab_size,
        seed=0,
    )  # fmt: skip
    times = []
    for step in range(args.steps + 1):
        batch = data.get_batch(step)
        if world is not None:
            dist.barrier()
        start = time.perf_counter()
        micro_batches = pack_samples(batch.samples, args.micro_tokens)
        train_step(model, optimizer, scheduler, micro_batches, loss_fn, optim_config.max_norm, 1024)
        if world is not None:
            dist.barrier()
        times.append(time.perf_counter() - start)
    return times[1:]


def peak_rss_gib() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


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


def run_side(side: str) -> dict:
    me = [__file__, "--side", side, *sys.argv[1:]]
    if side == "dist":
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2", *me]
    else:
        cmd = [sys.executable, *me]
    env = {**os.environ, "OMP_NUM_THREADS": "1" if side == "dist" else "2"}
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, env=env)
    if proc.returncode != 0:
        sys.exit(f"{side} run failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def parent(args) -> None:
    tokens = args.samples * args.sample_len
    results = {"single": run_side("single"), "dist": run_side("dist")}
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

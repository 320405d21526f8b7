"""Trainer throughput: one full RL step (packing, logprobs, default loss, backward, AdamW) vs a plain transformers loop.

Both sides see the same tokens: `--samples` samples of `--sample-len` tokens, in micro-batches of `--micro-tokens`
tokens (ours: packed rows; baseline: `micro_tokens // sample_len` unpadded rows of the same samples). The baseline
is `model(input_ids, labels=input_ids).loss.backward()` per micro-batch, then `AdamW.step()`. Each side runs in its
own subprocess (so peak RSS is its own), one warm-up step, then `--steps` timed steps; sides alternate for
`--rounds` rounds and the median step time of each side is reported.
Weight broadcast is not part of the timed step.

    .venv/bin/python benchmarks/trainer.py                      # 64 x 256 tokens (slow on 2 CPU cores)
    .venv/bin/python benchmarks/trainer.py --samples 8 --steps 2 --rounds 2 --threads 1 --clock cpu   # shared host
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time


def clock(args) -> float:
    """Wall time, or CPU time of this process (all threads), which other load on a shared machine barely moves."""
    return time.process_time() if args.clock == "cpu" else time.perf_counter()


def make_batch(args):
    from prime_rl.trainer.rl.config import DataConfig
    from prime_rl.trainer.rl.data import FakeDataLoader

    prompt_len = args.sample_len // 4
    config = DataConfig(
        fake=True,
        fake_batch_size=args.samples,
        fake_prompt_len=prompt_len,
        fake_completion_len=args.sample_len - prompt_len,
    )
    return FakeDataLoader(config, vocab_size=49152, seed=0)


def run_ours(args) -> list[float]:
    from prime_rl.trainer.config import AdamWConfig, ConstantSchedulerConfig, TrainerModelConfig
    from prime_rl.trainer.model import setup_model
    from prime_rl.trainer.optim import setup_optimizer
    from prime_rl.trainer.packing import pack_samples
    from prime_rl.trainer.rl.config import LossConfig
    from prime_rl.trainer.rl.loss import setup_loss_fn
    from prime_rl.trainer.scheduler import setup_scheduler
    from prime_rl.trainer.step import train_step

    model = setup_model(TrainerModelConfig(name=args.model, attn_implementation=args.attn))
    optim_config = AdamWConfig(lr=1e-6)
    optimizer = setup_optimizer(optim_config, model)
    scheduler = setup_scheduler(ConstantSchedulerConfig(), optimizer, None)
    loss_fn = setup_loss_fn(LossConfig())
    data = make_batch(args)
    times = []
    for step in range(args.steps + 1):
        batch = data.get_batch(step)
        start = clock(args)
        micro_batches = pack_samples(batch.samples, args.micro_tokens)
        train_step(model, optimizer, scheduler, micro_batches, loss_fn, optim_config.max_norm, 1024)
        times.append(clock(args) - start)
    return times[1:]


def run_baseline(args) -> list[float]:
    import torch
    from transformers import AutoModelForCausalLM

    from prime_rl.utils.models import resolve_model_path

    model = AutoModelForCausalLM.from_pretrained(resolve_model_path(args.model), dtype=torch.float32)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-6, weight_decay=0.01)
    data = make_batch(args)
    rows = max(args.micro_tokens // args.sample_len, 1)
    times = []
    for step in range(args.steps + 1):
        batch = data.get_batch(step)
        start = clock(args)
        ids = torch.tensor([s.prompt_ids + s.completion_ids for s in batch.samples])
        for i in range(0, len(ids), rows):
            x = ids[i : i + rows]
            model(input_ids=x, labels=x).loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        times.append(clock(args) - start)
    return times[1:]


def child(args) -> None:
    import resource

    from prime_rl.utils.threads import setup_threads

    setup_threads(args.threads or None, "trainer", "--threads")
    times = run_ours(args) if args.side == "ours" else run_baseline(args)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(json.dumps({"times": times, "peak_rss_gib": rss}))


def parent(args) -> None:
    # Sides alternate over rounds so that load from other processes on the machine hits both alike.
    times: dict[str, list[float]] = {"baseline": [], "ours": []}
    rss: dict[str, float] = {"baseline": 0.0, "ours": 0.0}
    for _ in range(args.rounds):
        for side in ("baseline", "ours"):
            cmd = [sys.executable, __file__, "--side", side, *sys.argv[1:]]
            proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
            if proc.returncode != 0:
                sys.exit(f"{side} run failed:\n{proc.stderr[-3000:]}")
            result = json.loads(proc.stdout.strip().splitlines()[-1])
            times[side] += result["times"]
            rss[side] = max(rss[side], result["peak_rss_gib"])
    tokens = args.samples * args.sample_len
    tps = {side: tokens / statistics.median(t) for side, t in times.items()}
    for side, t in times.items():
        steps = ", ".join(f"{x:.2f}" for x in t)
        print(f"{side:8s}: step times [{steps}] s, median {tps[side]:.1f} tokens/s, peak RSS {rss[side]:.2f} GiB")
    ratio = tps["ours"] / tps["baseline"]
    ours, base = tps["ours"], tps["baseline"]
    unit = "tokens/s" if args.clock == "wall" else "tokens/cpu-s"
    print(f"trainer_step_throughput: {ours:.1f} {unit} (baseline: {base:.1f} {unit}, ratio: {ratio:.2f}x)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--samples", type=int, default=64, help="samples per step")
    parser.add_argument("--sample-len", type=int, default=256, help="tokens per sample")
    parser.add_argument("--micro-tokens", type=int, default=2048, help="tokens per micro-batch (trainer seq_len)")
    parser.add_argument("--steps", type=int, default=2, help="timed steps after one warm-up step, per round")
    parser.add_argument("--rounds", type=int, default=1, help="alternating baseline/ours subprocess rounds")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: every available core)")
    parser.add_argument("--attn", default="varlen", help="our attention implementation")
    parser.add_argument("--clock", choices=["wall", "cpu"], default="wall", help="cpu: process CPU time (shared hosts)")
    parser.add_argument("--side", choices=["ours", "baseline"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    child(args) if args.side else parent(args)


if __name__ == "__main__":
    main()

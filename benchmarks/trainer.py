"""Trainer throughput: one full RL step (packing, logprobs, default loss, backward, AdamW) vs a plain transformers loop.

Both sides see the same tokens: `--samples` samples of `--sample-len` tokens, in micro-batches of `--micro-tokens`
tokens (ours: packed rows; baseline: `micro_tokens // sample_len` unpadded rows of the same samples). The baseline
is `model(input_ids, labels=input_ids).loss.backward()` per micro-batch, then `AdamW.step()`. Each side runs in its
own subprocess (so peak RSS is its own), one warm-up step, then `--steps` timed steps; sides alternate for
`--rounds` rounds and the median step time of each side is reported.
Weight broadcast is not part of the timed step.

`--flops`: the achieved model FLOP/s of a trainer step (packing + `train_step`) on `make run`'s one-word shapes
(`--groups` groups of 8 samples, 43-token prompts shared, 10-20 completion tokens, `seq_len` 256), and in the same
process, at the same thread count, the float32 matmul FLOP/s of that step's own GEMMs (the formula and the GEMMs are
in `benchmarks/flops.py`); steps and GEMM suites alternate for `--rounds` rounds, medians are reported, and the
utilisation is their ratio. `--variants` names trainer configurations to time side by side (the first one gives the
utilisation line): `fused` (the default AdamW), `foreach` (`optim.fused = false`) and `lean_mlp`
(`model.lean_mlp = true`): all in one process, steps alternated.

    .venv/bin/python benchmarks/trainer.py                      # 64 x 256 tokens (slow on 2 CPU cores)
    .venv/bin/python benchmarks/trainer.py --samples 8 --steps 2 --rounds 2 --threads 1 --clock cpu   # shared host
    .venv/bin/python benchmarks/trainer.py --flops --rounds 3 --threads 1 --clock cpu --variants fused,foreach
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys

from common import clock, fake_data, peak_rss_gib, run_side, setup_rl_step, timed_rl_steps


def run_ours(args) -> list[float]:
    from prime_rl.trainer.config import TrainerModelConfig
    from prime_rl.trainer.model import setup_model

    model = setup_model(TrainerModelConfig(name=args.model, attn_implementation=args.attn))
    return timed_rl_steps(args, setup_rl_step(model, lr=1e-6), lambda: clock(args))


def run_baseline(args) -> list[float]:
    import torch
    from transformers import AutoModelForCausalLM

    from prime_rl.utils.models import resolve_model_path

    model = AutoModelForCausalLM.from_pretrained(resolve_model_path(args.model), dtype=torch.float32)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-6, weight_decay=0.01)
    data = fake_data(args, model.config.vocab_size)
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
    from prime_rl.utils.threads import setup_threads

    setup_threads(args.threads or None, "trainer", "--threads")
    times = run_ours(args) if args.side == "ours" else run_baseline(args)
    print(json.dumps({"times": times, "peak_rss_gib": peak_rss_gib()}))


VARIANTS = {
    # name: (TrainerModelConfig overrides, AdamWConfig overrides)
    "fused": ({}, {"fused": True}),
    "foreach": ({}, {"fused": False}),
    "lean_mlp": ({"lean_mlp": True}, {}),
}


def setup_variant(args, name: str):
    from prime_rl.trainer.config import AdamWConfig, ConstantSchedulerConfig, TrainerModelConfig
    from prime_rl.trainer.model import setup_model
    from prime_rl.trainer.optim import setup_optimizer
    from prime_rl.trainer.scheduler import setup_scheduler

    model_overrides, optim_overrides = VARIANTS[name]
    model = setup_model(TrainerModelConfig(name=args.model, **model_overrides))
    optimizer = setup_optimizer(AdamWConfig(lr=1e-6, **optim_overrides), model)
    return model, optimizer, setup_scheduler(ConstantSchedulerConfig(), optimizer, None)


def gflops(flops: float, seconds: list[float]) -> float:
    return flops / statistics.median(seconds) / 1e9


def profile_step(trainer, pack, loss_fn) -> None:
    """Prints where one step's time goes: torch.profiler's operators by their own time."""
    from torch.profiler import ProfilerActivity, profile

    from prime_rl.trainer.step import train_step

    model, optimizer, scheduler = trainer
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        train_step(model, optimizer, scheduler, pack(), loss_fn, 1.0, 1024)
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15))


def run_flops(args) -> None:
    import torch

    from flops import gemm_shapes, matmul_rate, step_flops
    from prefix_sharing import SHAPES, make_samples
    from prime_rl.trainer.packing import pack_samples
    from prime_rl.trainer.rl.config import LossConfig
    from prime_rl.trainer.rl.loss import setup_loss_fn
    from prime_rl.trainer.step import train_step

    if args.threads:
        torch.set_num_threads(args.threads)
    prompt_len, lens, per_group, seq_len = SHAPES["one_word"]
    samples = make_samples(prompt_len, lens, per_group, args.groups, 49152, seed=0)
    loss_fn = setup_loss_fn(LossConfig())
    names = args.variants.split(",")
    trainers = {name: setup_variant(args, name) for name in names}
    step_times: dict[str, list[float]] = {name: [] for name in names}
    gemm_times: list[float] = []
    for _ in range(args.rounds + 1):  # round 0 warms up
        for name, (model, optimizer, scheduler) in trainers.items():
            start = clock(args)
            micro_batches = pack_samples(samples, seq_len, share=True)
            train_step(model, optimizer, scheduler, micro_batches, loss_fn, 1.0, 1024)
            step_times[name].append(clock(args) - start)
        gemm_flops, seconds = matmul_rate(gemm_shapes(model, micro_batches), lambda: clock(args))
        gemm_times.append(seconds)
    flops = step_flops(model, micro_batches)
    terms = ", ".join(f"{term} {value / 1e9:.1f}" for term, value in flops.items())
    tokens = sum(mb.num_model_tokens for mb in micro_batches)
    print(f"step: {tokens} model tokens in {len(micro_batches)} micro-batches, GFLOP {terms}")
    print(f"matmul suite: {gemm_flops / 1e9:.1f} GFLOP, times [{', '.join(f'{t:.2f}' for t in gemm_times[1:])}] s")
    matmul = gflops(gemm_flops, gemm_times[1:])
    for name, times in step_times.items():
        warm = ", ".join(f"{t:.2f}" for t in times[1:])
        median = statistics.median(times[1:])
        print(f"{name:8s}: first step {times[0]:.2f} s, step times [{warm}] s, median {median:.2f} s")
    first, *others = names
    for name in others:
        ratio = statistics.median(step_times[name][1:]) / statistics.median(step_times[first][1:])
        print(f"step_time_{name}_vs_{first}: {ratio:.2f}x")
    if args.profile:
        profile_step(trainers[first], lambda: pack_samples(samples, seq_len, share=True), loss_fn)
    achieved = gflops(sum(flops.values()), step_times[first][1:])
    line = f"{achieved:.1f} GFLOP/s (baseline: matmul {matmul:.1f} GFLOP/s, ratio: {achieved / matmul:.2f}x)"
    print(f"trainer_flops_utilisation: {line}")


def parent(args) -> None:
    # Sides alternate over rounds so that load from other processes on the machine hits both alike.
    times: dict[str, list[float]] = {"baseline": [], "ours": []}
    rss: dict[str, float] = {"baseline": 0.0, "ours": 0.0}
    for _ in range(args.rounds):
        for side in ("baseline", "ours"):
            result = run_side(side, [sys.executable, __file__, "--side", side, *sys.argv[1:]])
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
    parser.add_argument("--flops", action="store_true", help="utilisation: model FLOP/s vs the matmul rate")
    parser.add_argument("--groups", type=int, default=4, help="--flops: one-word groups of 8 samples per step")
    parser.add_argument("--variants", default="fused", help=f"--flops: comma-separated, of {', '.join(VARIANTS)}")
    parser.add_argument("--profile", action="store_true", help="--flops: print one step's torch.profiler table")
    parser.add_argument("--side", choices=["ours", "baseline"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.flops:
        run_flops(args)
    else:
        child(args) if args.side else parent(args)


if __name__ == "__main__":
    main()

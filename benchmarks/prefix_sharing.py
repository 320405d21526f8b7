"""Shared prompts (Prefix Grouper) in the trainer: tokens the model runs on and seconds per step, shared vs unshared.

Two batch shapes of random token ids: `make run`'s one-word example (`--groups` groups of 8 samples, a 43-token prompt,
completions of 10-20 tokens, `seq_len` 256) and a long-prompt case (400-token prompts, 8 x 32-token completions,
`seq_len` 2048). A step is packing plus `train_step` (logprobs, default loss, backward, AdamW) on SmolLM2-135M in
float32, one model in one process; after one warm-up step of each, unshared and shared steps alternate for
`--rounds` rounds, so load from other processes on the machine hits both alike. Medians are reported.

    .venv/bin/python benchmarks/prefix_sharing.py                    # both shapes
    .venv/bin/python benchmarks/prefix_sharing.py --rounds 2 --threads 1 --clock cpu   # shared host
"""

from __future__ import annotations

import argparse
import statistics

import torch

from common import clock, setup_rl_step
from prime_rl.trainer.config import TrainerModelConfig
from prime_rl.trainer.model import setup_model
from prime_rl.trainer.packing import pack_samples
from prime_rl.transport.types import TrainingSample
from prime_rl.utils.threads import setup_threads

SHAPES = {
    # name: (prompt tokens, completion length range, samples per group, seq_len)
    "one_word": (43, (10, 20), 8, 256),
    "long_prompt": (400, (32, 32), 8, 2048),
}


def make_samples(prompt_len: int, lens: tuple[int, int], per_group: int, groups: int, vocab: int, seed: int):
    gen = torch.Generator().manual_seed(seed)
    samples = []
    for _ in range(groups):
        prompt = torch.randint(0, vocab, (prompt_len,), generator=gen).tolist()
        for _ in range(per_group):
            n = int(torch.randint(lens[0], lens[1] + 1, (1,), generator=gen))
            samples.append(
                TrainingSample(
                    prompt_ids=prompt,
                    completion_ids=torch.randint(0, vocab, (n,), generator=gen).tolist(),
                    completion_mask=[True] * n,
                    completion_logprobs=[-10.0] * n,
                    completion_temperatures=[1.0] * n,
                    advantage=float(torch.randn(1, generator=gen)),
                    reward=0.0,
                    policy_step=0,
                )
            )
    return samples


def measure(args, name: str, groups: int) -> None:
    prompt_len, lens, per_group, seq_len = SHAPES[name]
    model = setup_model(TrainerModelConfig(name=args.model))
    step = setup_rl_step(model, lr=1e-6)
    samples = make_samples(prompt_len, lens, per_group, groups, model.config.vocab_size, seed=0)
    tokens: dict[bool, int] = {}
    times: dict[bool, list[float]] = {False: [], True: []}
    for round_ in range(args.rounds + 1):
        for share in (False, True):
            start = clock(args)
            micro_batches = pack_samples(samples, seq_len, share=share)
            step(micro_batches)
            if round_ > 0:  # round 0 warms up
                times[share].append(clock(args) - start)
            tokens[share] = sum(mb.num_model_tokens for mb in micro_batches)
    shared, unshared = statistics.median(times[True]), statistics.median(times[False])
    unit = "s" if args.clock == "wall" else "cpu-s"
    print(
        f"{name}: {groups} groups x {per_group} samples, prompt {prompt_len}, completions {lens[0]}-{lens[1]}, "
        f"seq_len {seq_len}; step times unshared {[round(t, 2) for t in times[False]]}, "
        f"shared {[round(t, 2) for t in times[True]]}"
    )
    ratio = tokens[False] / tokens[True]
    print(f"{name}_trainer_tokens: {tokens[True]} (baseline: {tokens[False]} unshared, ratio: {ratio:.2f}x fewer)")
    speedup = unshared / shared
    print(f"{name}_step_time: {shared:.2f} {unit} (baseline: {unshared:.2f} {unit} unshared, ratio: {speedup:.2f}x)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--groups", type=int, default=4, help="groups per step, one-word shape (make run: 4; 0: skip)")
    parser.add_argument("--long-groups", type=int, default=1, help="groups per step, long-prompt shape (0: skip)")
    parser.add_argument("--rounds", type=int, default=3, help="timed unshared/shared step pairs after one warm-up")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: every available core)")
    parser.add_argument("--clock", choices=["wall", "cpu"], default="wall", help="cpu: process CPU time (shared hosts)")
    args = parser.parse_args()
    setup_threads(args.threads or None, "trainer", "--threads")
    if args.long_groups:
        measure(args, "long_prompt", args.long_groups)
    if args.groups:
        measure(args, "one_word", args.groups)


if __name__ == "__main__":
    main()

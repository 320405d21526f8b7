"""Default loss on one packed micro-batch, forward + backward: vectorized path vs the per-sequence loop.

512 sequences of random lengths 16-512 (float32, CPU). Baseline: `compute_loss` calling `default_loss_fn` once per
sequence (the contract for custom losses); ours: `compute_micro_batch_loss` (segment reductions, no Python loop).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from prime_rl.trainer.packing import MicroBatch
from prime_rl.trainer.rl.config import LossConfig
from prime_rl.trainer.rl.loss import compute_loss, compute_micro_batch_loss, setup_loss_fn
from prime_rl.utils.threads import setup_threads


def make_batch(num_seqs: int, seed: int):
    gen = torch.Generator().manual_seed(seed)
    seq_lens = torch.randint(16, 513, (num_seqs,), generator=gen).tolist()
    n = sum(seq_lens)
    lp = -torch.rand(n, generator=gen) * 4
    inf_lp = lp - torch.randn(n, generator=gen) * 0.3
    adv = torch.repeat_interleave(torch.randn(num_seqs, generator=gen), torch.tensor(seq_lens))
    mask = torch.rand(n, generator=gen) > 0.2
    return lp, inf_lp, adv, mask, seq_lens


def time_both_ms(ours, baseline, repeats: int) -> tuple[float, float]:
    """Median wall time of each, measured alternately so that load from other processes hits both alike."""
    ours(), baseline()  # warm-up
    times: dict[str, list[float]] = {"ours": [], "baseline": []}
    for _ in range(repeats):
        for name, fn in (("ours", ours), ("baseline", baseline)):
            start = time.perf_counter()
            fn()
            times[name].append((time.perf_counter() - start) * 1e3)
    return statistics.median(times["ours"]), statistics.median(times["baseline"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--num-seqs", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=9)
    args = parser.parse_args()
    setup_threads(1, "benchmark", "threads")

    loss_fn = setup_loss_fn(LossConfig())
    lp, inf_lp, adv, mask, seq_lens = make_batch(args.num_seqs, seed=0)
    scale = float(mask.sum())
    ids = torch.zeros_like(lp, dtype=torch.long)
    micro_batch = MicroBatch(ids, ids, mask, inf_lp, adv, torch.ones_like(lp), seq_lens)

    def vectorized() -> None:
        x = lp.clone().requires_grad_()
        loss, _ = compute_micro_batch_loss(x, micro_batch, loss_fn, scale)
        loss.backward()

    def per_sequence() -> None:
        x = lp.clone().requires_grad_()
        split = [list(torch.split(t, seq_lens)) for t in (x, inf_lp, adv, mask)]
        loss, _ = compute_loss(split[0], split[1], None, split[2], split[3], loss_fn, scale)
        loss.backward()

    ours, base = time_both_ms(vectorized, per_sequence, args.repeats)
    print(f"{args.num_seqs} sequences, {sum(seq_lens)} tokens, forward + backward, median of {args.repeats}, 1 thread")
    print(f"default_loss: {ours:.1f} ms (baseline: {base:.1f} ms, ratio: {base / ours:.2f}x)")


if __name__ == "__main__":
    main()

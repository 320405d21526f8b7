"""LoRA vs full fine-tuning: one RL step (packing, logprobs, default loss, backward, AdamW) plus its weight broadcast
on SmolLM2, each side in its own subprocess (so peak RSS is its own), same fake batch, same run.

One warm-up step, then `--steps` timed steps per round; sides alternate for `--rounds` rounds and the median is
reported. The ratio is full / LoRA step seconds (above 1: LoRA is faster). Broadcast bytes are the files of one
`broadcasts/step_N/` (the full model's safetensors vs the adapter's safetensors + config).

    .venv/bin/python benchmarks/lora.py                                   # 16 x 256 tokens
    .venv/bin/python benchmarks/lora.py --samples 8 --threads 1 --clock cpu   # shared host
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

from common import clock, peak_rss_gib, run_side, setup_rl_step, timed_rl_steps


def run_lora_side(args) -> dict:
    import torch

    from prime_rl.trainer.config import LoRAConfig, TrainerModelConfig
    from prime_rl.trainer.model import setup_model
    from prime_rl.weights.broadcast import broadcast_weights

    torch.manual_seed(0)
    lora = LoRAConfig(rank=args.rank, alpha=2.0 * args.rank) if args.side == "lora" else None
    model = setup_model(TrainerModelConfig(name=args.model, lora=lora))
    paths = []
    with tempfile.TemporaryDirectory(prefix=f"bench_lora_{args.side}_") as out:

        def broadcast(step: int) -> None:
            paths.append(broadcast_weights(model, Path(out), step + 1, keep=1))

        times = timed_rl_steps(args, setup_rl_step(model, lr=1e-5), lambda: clock(args), after=broadcast)
        size = sum(f.stat().st_size for f in paths[-1].iterdir() if f.name != "STABLE")
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {"times": times, "broadcast_bytes": size, "trainable": trainable}


def child(args) -> None:
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    result = run_lora_side(args)
    result["peak_rss_gib"] = peak_rss_gib()
    print(json.dumps(result))


def parent(args) -> None:
    times: dict[str, list[float]] = {"full": [], "lora": []}
    info: dict[str, dict] = {}
    for _ in range(args.rounds):
        for side in ("full", "lora"):
            result = run_side(side, [sys.executable, __file__, "--side", side, *sys.argv[1:]])
            times[side] += result["times"]
            rss = max(info.get(side, {}).get("peak_rss_gib", 0.0), result["peak_rss_gib"])
            info[side] = result | {"peak_rss_gib": rss}
    median = {side: statistics.median(t) for side, t in times.items()}
    for side, t in times.items():
        steps = ", ".join(f"{x:.2f}" for x in t)
        print(f"{side:4s}: step times [{steps}] s, {info[side]['trainable'] / 1e6:.2f}M trainable parameters")
    full, lora = info["full"], info["lora"]
    byte_ratio = full["broadcast_bytes"] / lora["broadcast_bytes"]
    print(
        f"broadcast_bytes: lora {lora['broadcast_bytes']} (full {full['broadcast_bytes']}, {byte_ratio:.1f}x smaller)"
    )
    print(f"peak_rss: lora {lora['peak_rss_gib']:.2f} GiB (full {full['peak_rss_gib']:.2f} GiB)")
    unit = "s" if args.clock == "wall" else "cpu-s"
    ratio = median["full"] / median["lora"]
    print(f"lora_step_seconds: {median['lora']:.2f} {unit} (baseline: full {median['full']:.2f} {unit}, "
          f"ratio: {ratio:.2f}x)")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--rank", type=int, default=16, help="LoRA rank (alpha = 2 x rank), all linear layers")
    parser.add_argument("--samples", type=int, default=16, help="samples per step")
    parser.add_argument("--sample-len", type=int, default=256, help="tokens per sample")
    parser.add_argument("--micro-tokens", type=int, default=2048, help="tokens per micro-batch (trainer seq_len)")
    parser.add_argument("--steps", type=int, default=2, help="timed steps after one warm-up step, per round")
    parser.add_argument("--rounds", type=int, default=1, help="alternating full/lora subprocess rounds")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch default)")
    parser.add_argument("--clock", choices=["wall", "cpu"], default="wall", help="cpu: process CPU time (shared hosts)")
    parser.add_argument("--side", choices=["full", "lora"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    child(args) if args.side else parent(args)


if __name__ == "__main__":
    main()

"""What the trainer's memory levers cost per step: RL trainer steps on `make run`'s one-word shapes (4 groups of 8
samples, 43-token prompts shared, 10-20 completion tokens) with a lever on and off, each variant in its own process
(a heap trim in one process would change the next variant's page faults), alternated for `--rounds` rounds.

Variants: `default` (the trainer as it ships), `trim` (`malloc_trim` after each step: freed activations and
gradients leave the resident set, and fault back in at the next step), `lean_mlp` (`model.lean_mlp`: the MLP
backward of `trainer/lean_mlp.py`, which recomputes instead of saving), `autograd_embedding` (the input embedding's
gradient left to autograd, which allocates a [vocab, hidden] buffer per micro-batch, instead of
`trainer/in_place_grad.py`). Each reports its CPU seconds per step (all threads; other load on a shared machine
barely moves it), its RSS after each step, and its peak RSS within each step, polled every 2 ms (a buffer that
lives for milliseconds, which `memory.py`'s 0.5 s samples rarely see). The last lines compare each variant's
median step and median in-step peak with the default's:

    .venv/bin/python benchmarks/trainer_levers.py [--rounds 3] [--steps 4] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import threading
import time

from common import run_side, setup_rl_step

VARIANTS = ("default", "trim", "lean_mlp", "autograd_embedding")


class PeakRSS:
    """The largest RSS of this process seen since the last `reset()`, polled every 2 ms by a daemon thread."""

    def __init__(self) -> None:
        import psutil

        self.process, self.peak = psutil.Process(), 0
        threading.Thread(target=self._poll, daemon=True).start()

    def _poll(self) -> None:
        while True:
            self.peak = max(self.peak, self.process.memory_info().rss)
            time.sleep(0.002)

    def reset(self) -> None:
        self.peak = self.process.memory_info().rss


def child(args) -> None:
    import torch

    from prefix_sharing import SHAPES, make_samples
    from prime_rl.trainer.config import TrainerModelConfig
    from prime_rl.trainer.model import setup_model
    from prime_rl.trainer.packing import pack_samples
    from prime_rl.utils.memory import release_free_memory

    torch.set_num_threads(args.threads)
    model = setup_model(TrainerModelConfig(name=args.model, lean_mlp=args.variant == "lean_mlp"))
    if args.variant == "autograd_embedding":
        del model.get_input_embeddings().forward  # nn.Embedding's own, set by `use_in_place_embedding_grad`
    step = setup_rl_step(model, lr=1e-6)
    prompt_len, lens, per_group, seq_len = SHAPES["one_word"]
    seconds, rss, peaks, peak = [], [], [], PeakRSS()
    for i in range(args.steps + 1):  # step 0 warms up
        samples = make_samples(prompt_len, lens, per_group, 4, model.config.vocab_size, seed=i)
        peak.reset()
        start = time.process_time()
        step(pack_samples(samples, seq_len, share=True))
        if args.variant == "trim":
            release_free_memory()
        seconds.append(time.process_time() - start)
        rss.append(peak.process.memory_info().rss / 2**30)
        peaks.append(peak.peak / 2**30)
    print(json.dumps({"seconds": seconds[1:], "rss": rss[1:], "peak": peaks[1:]}))


def parent(args) -> None:
    results: dict[str, dict[str, list[float]]] = {v: {"seconds": [], "rss": [], "peak": []} for v in VARIANTS}
    for r in range(args.rounds):
        for variant in VARIANTS:
            cmd = [sys.executable, __file__, "--child", "--variant", variant, "--steps", str(args.steps)]
            cmd += ["--threads", str(args.threads), "--model", args.model]
            out = run_side(variant, cmd)
            for key in ("seconds", "rss", "peak"):
                results[variant][key] += out[key]
            steps = ", ".join(f"{s:.2f}" for s in out["seconds"])
            print(f"round {r + 1} {variant:18s}: cpu s/step [{steps}], RSS after steps {min(out['rss']):.2f}-"
                  f"{max(out['rss']):.2f} GiB, in-step peaks {min(out['peak']):.2f}-{max(out['peak']):.2f} GiB",
                  flush=True)  # fmt: skip
    for key, name, unit in (("peak", "trainer_in_step_peak", "GiB"), ("seconds", "trainer_step", "cpu-s")):
        base = statistics.median(results["default"][key])
        for variant in VARIANTS[1:]:
            median = statistics.median(results[variant][key])
            line = f"{median:.2f} {unit} (baseline: default {base:.2f} {unit}, ratio: {median / base:.2f}x)"
            print(f"{name}_{variant}: {line}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=4, help="timed steps per variant and round (after one warm-up)")
    parser.add_argument("--threads", type=int, default=1, help="the trainer's threads in `make run` on 2 cores")
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--variant", choices=VARIANTS, default="default", help=argparse.SUPPRESS)
    args = parser.parse_args()
    child(args) if args.child else parent(args)


if __name__ == "__main__":
    main()

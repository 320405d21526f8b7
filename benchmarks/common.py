"""What the trainer benchmarks share: the clock, the fake batches of `--samples` x `--sample-len` tokens, the parts of
one RL step on a model and its timed loop, and one side of a comparison run in its own subprocess."""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


def clock(args) -> float:
    """Wall time, or CPU time of this process (all threads), which other load on a shared machine barely moves."""
    return time.process_time() if args.clock == "cpu" else time.perf_counter()


def peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def fake_data(args, vocab_size: int):
    """Batches of `--samples` samples of `--sample-len` tokens, a quarter of them prompt, the same for every run."""
    from prime_rl.trainer.rl.config import DataConfig
    from prime_rl.trainer.rl.data import FakeDataLoader

    prompt_len = args.sample_len // 4
    config = DataConfig(
        fake=True,
        fake_batch_size=args.samples,
        fake_prompt_len=prompt_len,
        fake_completion_len=args.sample_len - prompt_len,
    )
    return FakeDataLoader(config, vocab_size=vocab_size, seed=0)


@dataclass
class RLStep:
    """The trainer's parts of one RL step on `model`: AdamW, a constant schedule and the default loss."""

    model: Any
    optimizer: Any
    scheduler: Any
    loss_fn: Any
    max_norm: float | None

    def __call__(self, micro_batches: list) -> None:
        from prime_rl.trainer.step import train_step

        train_step(self.model, self.optimizer, self.scheduler, micro_batches, self.loss_fn, self.max_norm, 1024)


def setup_rl_step(model, lr: float) -> RLStep:
    from prime_rl.trainer.config import AdamWConfig, ConstantSchedulerConfig
    from prime_rl.trainer.optim import setup_optimizer
    from prime_rl.trainer.rl.config import LossConfig
    from prime_rl.trainer.rl.loss import setup_loss_fn
    from prime_rl.trainer.scheduler import setup_scheduler

    optim_config = AdamWConfig(lr=lr)
    optimizer = setup_optimizer(optim_config, model)
    scheduler = setup_scheduler(ConstantSchedulerConfig(), optimizer, None)
    return RLStep(model, optimizer, scheduler, setup_loss_fn(LossConfig()), optim_config.max_norm)


def timed_rl_steps(
    args,
    step: RLStep,
    now: Callable[[], float],
    after: Callable[[int], None] = lambda step: None,
    sync: Callable[[], None] = lambda: None,
) -> list[float]:
    """One warm-up and `--steps` timed steps (packing into `--micro-tokens` micro-batches, then `step`) on the fake
    batches; `after(step)` runs inside the timing, `sync()` at both of its ends. Returns the timed steps' seconds."""
    from prime_rl.trainer.packing import pack_samples

    data = fake_data(args, step.model.config.vocab_size)
    times = []
    for i in range(args.steps + 1):
        batch = data.get_batch(i)
        sync()
        start = now()
        step(pack_samples(batch.samples, args.micro_tokens))
        after(i)
        sync()
        times.append(now() - start)
    return times[1:]


def run_side(side: str, cmd: list[str], env: dict[str, str] | None = None) -> dict:
    """Runs one side of a comparison; its result is the JSON object on its last line of stdout. A failed side ends
    the benchmark with the tail of its stderr."""
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, env=env)
    if proc.returncode != 0:
        sys.exit(f"{side} run failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])

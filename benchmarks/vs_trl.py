"""Side by side with TRL: TRL's `GRPOTrainer` and our `rl` on the one-word example (same environment, prompts,
reward functions and weights, model, group size, batch, max tokens, temperature, learning rate, optimizer, steps,
threads; float32 on CPU), one after the other (TRL first) in this process's children. Prints per-step reward,
`correct` and seconds, the peak RSS of each side's process tree (sampled every 0.5 s) and, last, the mean seconds
per step (steps after the first, which includes warm-up) with TRL as the baseline.

TRL is not a dependency of prime-rl; it lives in its own venv, and the benchmark runs with that venv's python:

    python -m venv .venv-trl
    .venv-trl/bin/pip install -e . -c constraints.txt     # torch stays 2.13.0+cpu (check `.venv-trl/bin/pip list`)
    .venv-trl/bin/pip install trl -c constraints.txt
    .venv-trl/bin/python benchmarks/vs_trl.py [--steps 10] [--config examples/one_word/rl.toml]

The settings are read from `--config` at run time. Differences that remain by design: `rl` keeps its own
scheduling (`max_async_level`, zero-advantage refill: its reward line covers every generated group), its default
loss (masked importance sampling); TRL runs on-policy with `loss_type = "dapo"` (tokens of the whole batch as the
denominator, as ours) and `scale_rewards` following our advantage (`default`: none, `grpo`: group std). The
orchestrator's `[orchestrator.eval]` is dropped from the `rl` run (TRL does not evaluate here).
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path
from typing import Any

from prime_rl.utils.net import free_port

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "one_word" / "rl.toml"
SCALE_REWARDS = {"default": "none", "grpo": "group"}
"""Our advantage `type` -> TRL's `scale_rewards` (both subtract the group mean; `grpo` also divides by its std)."""


def shared_settings(config: Any) -> dict[str, Any]:
    """What both sides share, from a parsed `RLConfig` (the first `[[orchestrator.env]]` is the task)."""
    orch, optim = config.orchestrator, config.trainer.optim
    env = orch.env[0]
    if orch.advantage.type not in SCALE_REWARDS or getattr(orch.advantage, "length_weighted_mean", False):
        raise ValueError(
            f"orchestrator.advantage: {orch.advantage!r} has no TRL counterpart; use {list(SCALE_REWARDS)}"
        )
    return {
        "model": config.model.name,
        "env_id": env.id,
        "env_args": dict(env.args),
        "rollouts_per_example": orch.rollouts_per_example,
        "batch_size": orch.batch_size,
        "max_tokens": orch.sampling.max_tokens,
        "temperature": orch.sampling.temperature,
        "top_p": orch.sampling.top_p,
        "advantage": orch.advantage.type,
        "lr": optim.lr,
        "weight_decay": optim.weight_decay,
        "betas": tuple(optim.betas),
        "eps": optim.eps,
        "max_norm": optim.max_norm,
        "activation_checkpointing": config.trainer.parallel.activation_checkpointing,
        "steps": config.max_steps,
        "seed": orch.seed,
        "threads": (config.inference.num_threads or 1) + (config.trainer.num_threads or 1),
    }


def grpo_config_kwargs(shared: dict[str, Any], output_dir: str) -> dict[str, Any]:
    """TRL `GRPOConfig` keyword arguments for the shared settings: one optimizer step per generation batch of
    `batch_size` completions (`batch_size / rollouts_per_example` prompts), constant learning rate, float32 on CPU."""
    return {
        "output_dir": output_dir,
        "per_device_train_batch_size": shared["batch_size"],
        "gradient_accumulation_steps": 1,
        "steps_per_generation": 1,
        "num_generations": shared["rollouts_per_example"],
        "max_completion_length": shared["max_tokens"],
        "temperature": shared["temperature"],
        "top_p": shared["top_p"],
        "learning_rate": shared["lr"],
        "lr_scheduler_type": "constant",
        "warmup_steps": 0,
        "weight_decay": shared["weight_decay"],
        "adam_beta1": shared["betas"][0],
        "adam_beta2": shared["betas"][1],
        "adam_epsilon": shared["eps"],
        "max_grad_norm": shared["max_norm"] or 0.0,
        "gradient_checkpointing": shared["activation_checkpointing"],  # TRL's default is True, ours False
        "max_steps": shared["steps"],
        "seed": shared["seed"],
        "beta": 0.0,
        "num_iterations": 1,
        "loss_type": "dapo",
        "scale_rewards": SCALE_REWARDS[shared["advantage"]],
        "use_cpu": True,
        "bf16": False,
        "fp16": False,
        "model_init_kwargs": {"dtype": "float32"},
        "logging_steps": 1,
        "report_to": "none",
        "save_strategy": "no",
        "disable_tqdm": True,
        "dataloader_num_workers": 0,
    }


def trl_reward_funcs(rubric: Any) -> tuple[list, list[float]]:
    """One TRL reward function per rubric function (same name, so TRL logs `rewards/<name>/mean`), and the weights.
    Conversational completions are chat messages, which is what the rubric's functions take."""
    from prime_rl.environments.rubric import _accepted_args

    def wrap(fn):
        args = _accepted_args(fn)

        def reward(prompts, completions, answer, **kwargs) -> list[float]:
            rows = zip(prompts, completions, answer, strict=True)
            values = [{"prompt": p, "completion": c, "answer": a, "info": {}} for p, c, a in rows]
            return [float(fn(**{k: v[k] for k in args})) for v in values]

        reward.__name__ = fn.__name__
        return reward

    return [wrap(fn) for fn in rubric.funcs], list(rubric.weights)


def run_trl(args) -> None:
    """Child: TRL's GRPOTrainer; one JSON line per step (`step`, `time`, `reward`, `correct`) into `args.out`."""
    import torch
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from prime_rl.environments import load_environment
    from prime_rl.utils.models import resolve_model_path

    shared = json.loads(args.shared)
    torch.set_num_threads(shared["threads"])
    env = load_environment(shared["env_id"], **shared["env_args"])
    dataset = Dataset.from_list([{"prompt": ex.prompt, "answer": ex.answer} for ex in env.dataset()])
    funcs, weights = trl_reward_funcs(env.rubric)
    out = Path(args.out)

    class StepLog(TrainerCallback):
        def on_log(self, _args, state, control, logs=None, **kwargs):
            if logs and "reward" in logs:
                record = {"step": state.global_step - 1, "time": time.time(), "reward": logs["reward"]}
                record["correct"] = logs.get("rewards/correct/mean")
                with out.open("a") as f:
                    f.write(json.dumps(record) + "\n")

    with tempfile.TemporaryDirectory() as tmp:
        config = GRPOConfig(**grpo_config_kwargs(shared, tmp), reward_weights=weights)
        trainer = GRPOTrainer(
            model=resolve_model_path(shared["model"]),
            reward_funcs=funcs,
            args=config,
            train_dataset=dataset,
            callbacks=[StepLog()],
        )
        with out.open("a") as f:
            f.write(json.dumps({"step": -1, "time": time.time()}) + "\n")
        trainer.train()


def run_tree(cmd: list[str], log: Path) -> tuple[float, float]:
    """Runs `cmd` to completion, sampling its process tree's RSS every 0.5 s; returns (wall seconds, peak GiB)."""
    import psutil

    from memory import TreeSample, sample_tree  # benchmarks/memory.py, beside this script

    start, peaks = time.monotonic(), TreeSample()
    with log.open("w") as f:
        proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT)
        root = psutil.Process(proc.pid)
        while proc.poll() is None:
            sample_tree(root, peaks)
            time.sleep(0.5)
    if proc.returncode != 0:
        sys.exit(f"{cmd[:4]} failed (exit {proc.returncode}):\n{log.read_text()[-3000:]}")
    return time.monotonic() - start, peaks.peak_total / 2**30


def rl_toml(config_path: Path, tmp: Path) -> Path:
    """The example's TOML without `[orchestrator.eval]`."""
    import tomli_w

    data = tomllib.loads(config_path.read_text())
    data.get("orchestrator", {}).pop("eval", None)
    path = tmp / "rl.toml"
    path.write_text(tomli_w.dumps(data))
    return path


def side_rl(args, tmp: Path) -> dict:
    """`rl` on the example: per-step reward and `correct` from the orchestrator's records, step ends from the
    trainer's."""
    out = tmp / "rl_out"
    cmd = [sys.executable, "-m", "prime_rl.rl", "@", str(rl_toml(args.config, tmp)), "--output-dir", str(out),
           "--max-steps", str(args.steps), "--inference.server.port", str(free_port())]  # fmt: skip
    wall, peak = run_tree(cmd, tmp / "rl.log")
    orch = [json.loads(line) for line in (out / "metrics" / "orchestrator.jsonl").read_text().splitlines()]
    trainer = [json.loads(line) for line in (out / "metrics" / "trainer.jsonl").read_text().splitlines()]
    by_step = {r["step"]: r for r in orch if "reward/mean" in r}
    ends = {r["step"]: r["time"] for r in trainer}
    steps = []
    for step in range(args.steps):
        record = by_step[step]
        correct = next((v for k, v in record.items() if k.startswith("rubric/") and k.endswith("/correct/mean")), None)
        steps.append({"step": step, "time": ends[step], "reward": record["reward/mean"], "correct": correct})
    return {"steps": steps, "wall": wall, "peak": peak}


def side_trl(args, tmp: Path, shared: dict) -> dict:
    """TRL in a child process (so its tree's RSS is its own)."""
    out = tmp / "trl_steps.jsonl"
    cmd = [sys.executable, __file__, "--side", "trl", "--shared", json.dumps(shared), "--out", str(out)]
    wall, peak = run_tree(cmd, tmp / "trl.log")
    records = [json.loads(line) for line in out.read_text().splitlines()]
    return {"steps": [r for r in records if r["step"] >= 0], "wall": wall, "peak": peak}


def seconds_per_step(steps: list[dict]) -> list[float]:
    """Time between consecutive step ends (the first step, which includes warm-up, has no entry)."""
    return [b["time"] - a["time"] for a, b in itertools.pairwise(steps)]


def report(name: str, side: dict) -> float:
    secs = seconds_per_step(side["steps"])
    for s, dt in zip(side["steps"], [None, *secs], strict=True):
        took = "" if dt is None else f", {dt:.1f} s"
        correct = "n/a" if s["correct"] is None else f"{s['correct']:.3f}"
        print(f"{name} step {s['step']}: reward {s['reward']:.3f}, correct {correct}{took}", flush=True)
    mean = statistics.mean(secs) if secs else float("nan")
    rewards = " ".join(f"{s['reward']:.3f}" for s in side["steps"])
    corrects = " ".join("n/a" if s["correct"] is None else f"{s['correct']:.3f}" for s in side["steps"])
    print(f"{name} reward curve: {rewards}")
    print(f"{name} correct curve: {corrects}")
    print(
        f"{name} peak RSS (process tree): {side['peak']:.2f} GiB, wall {side['wall']:.0f} s, {mean:.1f} s/step",
        flush=True,
    )
    return mean


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, default=EXAMPLE, help="the `rl` TOML both sides read")
    parser.add_argument("--steps", type=int, default=None, help="training steps (default: the config's max_steps)")
    parser.add_argument("--side", choices=["trl"], help=argparse.SUPPRESS)
    parser.add_argument("--shared", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.side == "trl":
        return run_trl(args)
    from prime_rl.launcher.config import RLConfig
    from prime_rl.utils.config import parse_config

    shared = shared_settings(parse_config(RLConfig, ["@", str(args.config)]))
    args.steps = shared["steps"] = args.steps or shared["steps"]
    print(f"shared settings: {json.dumps(shared)}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        base = report("trl", side_trl(args, Path(tmp), shared))
        ours = report("rl", side_rl(args, Path(tmp)))
    print(f"rl_seconds_per_step: {ours:.1f} s (baseline: TRL {base:.1f} s, ratio: {base / ours:.2f}x)")


if __name__ == "__main__":
    main()

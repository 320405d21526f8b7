"""FSDP2 under torchrun (2 CPU ranks, gloo) against one process: the same parameters after a step (RL with the default
and a seed-style loss, SFT, LoRA), checkpoints that resume on the same and on another number of ranks.

All 2-rank runs share one torchrun launch (`dist_runs.py`), the expensive part on a small machine.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from prime_rl.run_dir import RunDir
from prime_rl.trainer.ckpt import read_checkpoint_weights
from prime_rl.trainer.rl.config import RLTrainerConfig
from prime_rl.trainer.rl.train import train as rl_train
from prime_rl.trainer.sft.config import SFTConfig
from prime_rl.trainer.sft.train import train as sft_train
from prime_rl.utils.config import parse_config
from prime_rl.utils.metrics import read_metrics

REPO = Path(__file__).resolve().parents[2]
TOLERANCE = {"float32": 1e-5, "float64": 1e-10}
CUSTOM_LOSS = ["--loss.type", "custom", "--loss.import-path", "my_module.ppo_clip_loss"]
VARIANTS = {
    "hsdp": ["--parallel.shard-size", "1"],  # 2 replicas of 1 shard: the HSDP all-reduce path
    "checkpointed": ["--parallel.activation-checkpointing", "--parallel.reshard-after-forward", "false"],
}
"""2-rank runs of the default float64 step with other [parallel] settings: the same parameters."""
LORA = ["--model.lora.rank", "4"]
CONVERSATIONS = [
    {"messages": [{"role": "user", "content": f"Say {word}."}, {"role": "assistant", "content": word * (i + 1)}]}
    for i, word in enumerate(["yes", "no", "maybe"])
]


def rl_args(model_dir: Path, out: Path, dtype: str, steps: int, *extra: str) -> list[str]:
    # 3 samples of 10 tokens, 16-token micro-batches: 3 micro-batches, so one rank also runs a padding pass.
    return [
        *("--model.name", str(model_dir), "--model.dtype", dtype, "--output-dir", str(out), "--seq-len", "16"),
        *("--max-steps", str(steps), "--optim.lr", "1e-3", "--num-threads", "1", "--log.level", "warning"),
        *("--data.fake", "--data.fake-batch-size", "3", "--data.fake-prompt-len", "4"),
        *("--data.fake-completion-len", "6"),
        *extra,
    ]


def sft_args(model_dir: Path, data: Path, out: Path) -> list[str]:
    return [
        *("--model.name", str(model_dir), "--model.dtype", "float64", "--output-dir", str(out)),
        *("--data.path", str(data), "--max-steps", "1", "--batch-size", "3", "--seq-len", "48"),
        *("--optim.lr", "1e-3", "--num-threads", "1", "--log.level", "warning"),
    ]


def checkpoint_dir(out: Path, step: int) -> Path:
    return RunDir(out).checkpoint(step, "trainer")


def weights(out: Path, step: int) -> dict[str, torch.Tensor]:
    return load_file(out / "weights" / f"step_{step}" / "model.safetensors")


def assert_same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], atol: float) -> None:
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(a[name], b[name], atol=atol, rtol=0, msg=name)


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_model_dir) -> Path:
    """Runs `single/<name>` in this process and `dist/<name>` in one 2-rank torchrun launch; returns the root."""
    root = tmp_path_factory.mktemp("dist")
    data = root / "sft.jsonl"
    data.write_text("".join(json.dumps(c) + "\n" for c in CONVERSATIONS))
    sys.path.insert(0, str(REPO / "examples" / "custom_algorithms"))
    one_step = {
        f"{loss}_{dtype}": (dtype, extra)
        for dtype in TOLERANCE
        for loss, extra in [("default", []), ("custom", CUSTOM_LOSS)]
    }
    for name, (dtype, extra) in one_step.items():
        rl_train(parse_config(RLTrainerConfig, rl_args(tiny_model_dir, root / "single" / name, dtype, 1, *extra)))
    rl_train(
        parse_config(
            RLTrainerConfig, rl_args(tiny_model_dir, root / "single/two", "float64", 2, "--ckpt.interval", "2")
        )
    )
    sft_train(parse_config(SFTConfig, sft_args(tiny_model_dir, data, root / "single/sft")))
    rl_train(parse_config(RLTrainerConfig, rl_args(tiny_model_dir, root / "single/lora", "float64", 1, *LORA)))
    # A checkpoint written by one process, resumed below by two ranks.
    shutil.copytree(checkpoint_dir(root / "single/two", 2), checkpoint_dir(root / "dist/from_single", 2))

    dist = root / "dist"
    ckpt = ("--ckpt.interval", "2")
    plan = [("rl", rl_args(tiny_model_dir, dist / name, dtype, 1, *extra)) for name, (dtype, extra) in one_step.items()]
    plan += [("rl", rl_args(tiny_model_dir, dist / name, "float64", 1, *extra)) for name, extra in VARIANTS.items()]
    plan += [
        ("rl", rl_args(tiny_model_dir, dist / "four", "float64", 4, *ckpt)),
        ("rl", rl_args(tiny_model_dir, dist / "resumed", "float64", 2, *ckpt)),
        ("rl", rl_args(tiny_model_dir, dist / "resumed", "float64", 4, *ckpt, "--ckpt.resume-step", "-1")),
        ("rl", rl_args(tiny_model_dir, dist / "from_single", "float64", 4, *ckpt, "--ckpt.resume-step", "2")),
        ("sft", sft_args(tiny_model_dir, data, dist / "sft")),
        ("rl", rl_args(tiny_model_dir, dist / "lora", "float64", 1, *LORA)),
    ]
    (root / "plan.json").write_text(json.dumps(plan))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "examples" / "custom_algorithms"), *sys.path])}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2"]
    cmd += [str(Path(__file__).with_name("dist_runs.py")), str(root / "plan.json")]
    result = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)
    assert result.returncode == 0, result.stderr[-4000:]
    return root


@pytest.mark.parametrize("loss", ["default", "custom"])
@pytest.mark.parametrize("dtype", list(TOLERANCE))
def test_two_ranks_equal_one_process_after_a_step(runs, loss, dtype):
    single, dist = runs / "single" / f"{loss}_{dtype}", runs / "dist" / f"{loss}_{dtype}"
    assert_same(weights(dist, 1), weights(single, 1), TOLERANCE[dtype])
    assert load_file(dist / "broadcasts/step_1/model.safetensors").keys() == weights(single, 1).keys()
    (one,), (two,) = read_metrics(single / "metrics/trainer.jsonl"), read_metrics(dist / "metrics/trainer.jsonl")
    assert two["loss"] == pytest.approx(one["loss"], rel=1e-6)
    assert two["optim/grad_norm"] == pytest.approx(one["optim/grad_norm"], rel=1e-6)
    assert two["entropy/mean"] == pytest.approx(one["entropy/mean"], rel=1e-6)  # reduced over both ranks
    assert two["batch/loss_tokens"] == one["batch/loss_tokens"] == 18


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_parallel_settings_do_not_change_the_step(runs, variant):
    assert_same(weights(runs / "dist" / variant, 1), weights(runs / "single/default_float64", 1), 1e-10)


def test_two_ranks_resume_and_reshard(runs, tiny_model_dir):
    dist = runs / "dist"
    four = weights(dist / "four", 4)
    assert_same(weights(dist / "resumed", 4), four, 0.0)  # 4 steps == 2 steps + resume + 2 steps
    assert_same(weights(dist / "from_single", 4), four, TOLERANCE["float64"])  # 1-process checkpoint on 2 ranks
    assert [r["step"] for r in read_metrics(dist / "resumed/metrics/trainer.jsonl")] == [0, 1, 2, 3]

    # The 2-rank checkpoint of step 2 resumed by one process.
    out = runs / "single/from_dist"
    shutil.copytree(checkpoint_dir(dist / "four", 2), checkpoint_dir(out, 2))
    ckpt = ("--ckpt.interval", "2", "--ckpt.resume-step", "2")
    rl_train(parse_config(RLTrainerConfig, rl_args(tiny_model_dir, out, "float64", 4, *ckpt)))
    assert_same(weights(out, 4), four, TOLERANCE["float64"])
    assert_same(
        read_checkpoint_weights(checkpoint_dir(out, 4)),
        read_checkpoint_weights(checkpoint_dir(dist / "four", 4)),
        TOLERANCE["float64"],
    )


def test_sft_two_ranks_equal_one_process(runs):
    assert_same(weights(runs / "dist/sft", 1), weights(runs / "single/sft", 1), TOLERANCE["float64"])


def test_lora_two_ranks_equal_one_process(runs):
    """FSDP2 shards the frozen base and the adapters together; only the adapters train and are broadcast."""
    for path in ("broadcasts/step_1/adapter_model.safetensors", "weights/step_1/adapter_model.safetensors"):
        single, dist = load_file(runs / "single/lora" / path), load_file(runs / "dist/lora" / path)
        assert len(single) == 28
        assert_same(dist, single, TOLERANCE["float64"])

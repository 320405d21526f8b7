"""LoRA through the trainer and `rl` on the tiny model: a resumed trainer equals the uncut run, and in a real run the
server samples with the adapter the trainer broadcast (the trainer's logprobs match the rollouts')."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file

from prime_rl.trainer.rl.config import RLTrainerConfig
from prime_rl.trainer.rl.train import train
from prime_rl.utils.config import parse_config
from prime_rl.utils.metrics import read_metrics

FAKE = ["--data.fake", "--data.fake-batch-size", "2", "--data.fake-prompt-len", "4", "--data.fake-completion-len", "6"]
LORA = ["--model.lora.rank", "4", "--optim.lr", "1e-2", "--log.level", "warning", "--num-threads", "1"]

ENV_MODULE = """
from prime_rl.environments import Example, Rubric, SingleTurnEnv

def text_length(completion) -> float:
    return (len(completion[-1]["content"]) % 7) / 6

def load_environment():
    examples = [Example(i, [{"role": "user", "content": f"Count to {i}."}]) for i in range(40)]
    return SingleTurnEnv("count", examples, Rubric([text_length]))
"""


def test_trainer_resume_with_lora_equals_the_uncut_run(tiny_model_dir, tmp_path):
    def args(out: Path, steps: int, *extra: str) -> list[str]:
        return ["--model.name", str(tiny_model_dir), "--output-dir", str(out), "--seq-len", "64",
                "--max-steps", str(steps), *FAKE, *LORA, *extra]  # fmt: skip

    train(parse_config(RLTrainerConfig, args(tmp_path / "full", 4)))
    train(parse_config(RLTrainerConfig, args(tmp_path / "cut", 2, "--ckpt.interval", "2")))
    train(parse_config(RLTrainerConfig, args(tmp_path / "cut", 4, "--ckpt.interval", "2", "--ckpt.resume-step", "-1")))
    files = [
        f"{run}/{d}/adapter_model.safetensors"
        for run in ("full", "cut")
        for d in ("broadcasts/step_4", "weights/step_4")
    ]
    full, cut, full_export, cut_export = (load_file(tmp_path / f) for f in (files[0], files[2], files[1], files[3]))
    assert full.keys() == cut.keys() == full_export.keys() and len(full) == 28
    assert all(torch.equal(full[k], cut[k]) and torch.equal(full[k], cut_export[k]) for k in full)
    assert not any(torch.count_nonzero(t) == 0 for t in full.values())  # every B moved away from its zero init
    losses = [[r["loss"] for r in read_metrics(tmp_path / run / "metrics/trainer.jsonl")] for run in ("full", "cut")]
    assert losses[0] == losses[1] and len(losses[0]) == 4


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_rl_with_lora_serves_the_trainers_adapter(tiny_model_dir, tmp_path):
    (tmp_path / "count_env.py").write_text(ENV_MODULE)
    config = tmp_path / "rl.toml"
    config.write_text(
        f'output_dir = "{tmp_path / "out"}"\nmax_steps = 3\nmax_async_level = 0\nseq_len = 256\n'
        f'[model]\nname = "{tiny_model_dir}"\n[model.lora]\nrank = 4\n[inference.server]\nport = {_free_port()}\n'
        "[orchestrator]\nbatch_size = 8\nrollouts_per_example = 4\n[orchestrator.sampling]\nmax_tokens = 12\n"
        f'[[orchestrator.env]]\nid = "{tmp_path / "count_env.py"}"\n[trainer.optim]\nlr = 1e-2\n'
    )
    cmd = [sys.executable, "-m", "prime_rl.rl", "@", str(config)]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    out = tmp_path / "out"
    assert sorted(p.name for p in (out / "broadcasts/step_3").iterdir()) == [
        "STABLE", "adapter_config.json", "adapter_model.safetensors"
    ]  # fmt: skip
    assert (out / "weights/step_3/adapter_model.safetensors").is_file()
    trainer = read_metrics(out / "metrics/trainer.jsonl")
    orchestrator = read_metrics(out / "metrics/orchestrator.jsonl")
    assert [r["step"] for r in trainer] == [0, 1, 2] and orchestrator[2]["policy/loaded"] == 2
    # Steps 1 and 2 were sampled with the merged adapter of policies 1 and 2: the trainer (base + adapter, unmerged)
    # computes the same logprobs up to float32 rounding.
    for record in trainer[1:]:
        assert record["mismatch_kl/max"] < 1e-6, record

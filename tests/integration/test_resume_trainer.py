"""The trainer's side of resume: each step records the digest of the batch it trained, and a resume from the final
checkpoint of a run killed before its HF export trains nothing and writes the export; with LoRA, resume is exact."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file
from transformers import AutoConfig

from prime_rl.trainer.rl.config import DataConfig, RLTrainerConfig
from prime_rl.trainer.rl.data import FakeDataLoader
from prime_rl.trainer.rl.train import train
from prime_rl.transport.types import batch_digest
from prime_rl.utils.config import parse_config
from prime_rl.utils.metrics import read_metrics

FAKE = ["--data.fake", "--data.fake-batch-size", "2", "--data.fake-prompt-len", "4", "--data.fake-completion-len", "6"]


def test_digests_and_final_export_on_resume(tiny_model_dir, tmp_path):
    out = tmp_path / "out"
    base = ["--model.name", str(tiny_model_dir), "--output-dir", str(out), "--seq-len", "64", "--max-steps", "2",
            "--ckpt.interval", "1", "--log.level", "warning", *FAKE]  # fmt: skip
    train(parse_config(RLTrainerConfig, [*base, "--weights.no-final"]))
    assert not (out / "weights").exists()
    records = read_metrics(out / "metrics/trainer.jsonl")
    fake = DataConfig(fake=True, fake_batch_size=2, fake_prompt_len=4, fake_completion_len=6)
    data = FakeDataLoader(fake, AutoConfig.from_pretrained(tiny_model_dir).vocab_size, seed=0)  # the trainer's batches
    assert [r["batch/digest"] for r in records] == [batch_digest(data.get_batch(s)) for s in range(2)]

    train(parse_config(RLTrainerConfig, [*base, "--ckpt.resume-step", "-1"]))
    assert (out / "weights/step_2/STABLE").is_file()
    assert read_metrics(out / "metrics/trainer.jsonl") == records  # nothing trained again


def test_resume_with_lora_equals_the_uncut_run(tiny_model_dir, tmp_path):
    def args(out: Path, steps: int, *extra: str) -> list[str]:
        return ["--model.name", str(tiny_model_dir), "--output-dir", str(out), "--seq-len", "64",
                "--max-steps", str(steps), "--model.lora.rank", "4", "--optim.lr", "1e-2", "--log.level", "warning",
                *FAKE, *extra]  # fmt: skip

    train(parse_config(RLTrainerConfig, args(tmp_path / "full", 4)))
    train(parse_config(RLTrainerConfig, args(tmp_path / "cut", 2, "--ckpt.interval", "2")))
    train(parse_config(RLTrainerConfig, args(tmp_path / "cut", 4, "--ckpt.interval", "2", "--ckpt.resume-step", "-1")))
    adapter = "adapter_model.safetensors"
    full = load_file(tmp_path / "full/broadcasts/step_4" / adapter)
    for path in ("cut/broadcasts/step_4", "cut/weights/step_4", "full/weights/step_4"):
        other = load_file(tmp_path / path / adapter)
        assert other.keys() == full.keys() and all(torch.equal(other[k], full[k]) for k in full), path
    assert len(full) == 28 and all(torch.count_nonzero(t) for t in full.values())  # every B moved from its zero init
    losses = [[r["loss"] for r in read_metrics(tmp_path / run / "metrics/trainer.jsonl")] for run in ("full", "cut")]
    assert losses[0] == losses[1] and len(losses[0]) == 4

"""`sft` on a tiny random model: the loss goes down, the export loads, `rl` can start from it, resume is exact."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer

from prime_rl.trainer.config import ModelConfig
from prime_rl.trainer.model import setup_model
from prime_rl.trainer.sft.config import SFTConfig
from prime_rl.trainer.sft.train import main
from prime_rl.utils.config import parse_config
from prime_rl.utils.metrics import read_metrics

CONVERSATIONS = [
    {"prompt": "Reverse abc", "completion": "<answer>cba</answer>"},
    {"prompt": "Reverse hello", "completion": "<answer>olleh</answer>"},
    {"messages": [{"role": "user", "content": "Say hi"}, {"role": "assistant", "content": "hi"}]},
    {"prompt": [{"role": "user", "content": "Reverse dog"}], "completion": [{"role": "assistant", "content": "god"}]},
]


@pytest.fixture
def data_file(tmp_path: Path) -> Path:
    path = tmp_path / "data.jsonl"
    path.write_text("".join(json.dumps(c) + "\n" for c in CONVERSATIONS))
    return path


def sft_args(model_dir: Path, data: Path, out: Path, steps: int, *extra: str) -> list[str]:
    return [
        *("--model.name", str(model_dir), "--data.path", str(data), "--output-dir", str(out)),
        *("--max-steps", str(steps), "--batch-size", "2", "--seq-len", "128", "--optim.lr", "1e-2"),
        *("--num-threads", "1", "--log.file", "false"),
        *extra,
    ]


def test_loss_goes_down_and_export_loads(tmp_path, tiny_model_dir, data_file):
    out = tmp_path / "run"
    main(sft_args(tiny_model_dir, data_file, out, 8, "--weights.interval", "4"))
    records = read_metrics(out / "metrics" / "sft.jsonl")
    losses = [r["loss"] for r in records]
    assert [r["step"] for r in records] == list(range(8))
    assert losses[-1] < 0.5 * losses[0]
    assert losses[4] + losses[5] + losses[6] + losses[7] < losses[0] + losses[1] + losses[2] + losses[3]
    assert all(r["batch/samples"] == 2 for r in records)

    assert sorted(p.name for p in (out / "weights").iterdir()) == ["step_4", "step_8"]
    export = out / "weights" / "step_8"
    assert (export / "STABLE").is_file()
    model = AutoModelForCausalLM.from_pretrained(export)
    tokenizer = AutoTokenizer.from_pretrained(export)
    assert tokenizer.apply_chat_template([{"role": "user", "content": "x"}], tokenize=False).startswith("<|im_start|>")
    initial = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    trained = dict(model.named_parameters())
    assert any(not torch.equal(p, trained[n]) for n, p in initial.named_parameters())

    # A warm-started `rl` run: its trainer loads exactly the exported parameters.
    warm = setup_model(ModelConfig(name=str(export), attn_implementation="sdpa"))
    loaded = dict(warm.named_parameters())
    assert all(torch.equal(p, loaded[n]) for n, p in model.named_parameters())
    from prime_rl.launcher.config import RLConfig

    rl = parse_config(RLConfig, ["--model.name", str(export)])
    assert rl.trainer.model.name == rl.inference.model.name == rl.orchestrator.model.name == str(export)


def test_resume_continues_exactly(tmp_path, tiny_model_dir, data_file):
    full = tmp_path / "full"
    main(sft_args(tiny_model_dir, data_file, full, 4))
    parts = tmp_path / "parts"
    main(sft_args(tiny_model_dir, data_file, parts, 2, "--ckpt.interval", "2"))
    assert (parts / "checkpoints" / "step_2" / "trainer" / "STABLE").is_file()
    main(sft_args(tiny_model_dir, data_file, parts, 4, "--ckpt.interval", "2", "--ckpt.resume-step", "-1"))
    assert [r["step"] for r in read_metrics(parts / "metrics" / "sft.jsonl")] == [0, 1, 2, 3]
    expected = load_file(full / "weights" / "step_4" / "model.safetensors")
    resumed = load_file(parts / "weights" / "step_4" / "model.safetensors")
    assert expected.keys() == resumed.keys()
    assert all(torch.equal(expected[k], resumed[k]) for k in expected)
    full_losses = [r["loss"] for r in read_metrics(full / "metrics" / "sft.jsonl")]
    part_losses = [r["loss"] for r in read_metrics(parts / "metrics" / "sft.jsonl")]
    assert part_losses == full_losses


def test_config_parses_environment_data():
    config = parse_config(
        SFTConfig, ["--data.type", "environment", "--data.completion-format", "<answer>{answer}</answer>"]
    )
    assert config.data.id == "reverse-text" and config.data.split == "train"

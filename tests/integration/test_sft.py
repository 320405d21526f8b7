"""`sft` on a tiny random model: the loss goes down, the export loads, `rl` can start from it, resume is exact."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer

from prime_rl.trainer.ckpt import read_checkpoint_weights
from prime_rl.trainer.config import TrainerModelConfig
from prime_rl.trainer.model import setup_model
from prime_rl.trainer.sft.cli import main
from prime_rl.trainer.sft.config import SFTConfig
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
    warm = setup_model(TrainerModelConfig(name=str(export), attn_implementation="sdpa"))
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


@pytest.fixture
def nan_at_step_1(monkeypatch):
    """The SFT loss returns NaN on its second micro-batch (step 1: one micro-batch per step here)."""
    from prime_rl.trainer.rl.loss import Loss, LossOutputs
    from prime_rl.trainer.sft import loss as sft_loss
    from prime_rl.trainer.sft import train as sft_train

    calls = []

    def packed(inputs, seq_lens):
        calls.append(len(seq_lens))
        out = sft_loss.packed_nll_loss(inputs, seq_lens)
        return LossOutputs(loss=out.loss * float("nan") if len(calls) == 2 else out.loss, metrics={})

    nan_loss = Loss(per_sequence=sft_loss.nll_loss, packed=packed)
    for module in (sft_loss, sft_train):  # wherever the loop looks the loss up
        if hasattr(module, "SFT_LOSS"):
            monkeypatch.setattr(module, "SFT_LOSS", nan_loss)
    return calls


def test_on_nonfinite_skip_leaves_the_weights_and_counts_the_step(tmp_path, tiny_model_dir, data_file, nan_at_step_1):
    out = tmp_path / "run"
    main(sft_args(tiny_model_dir, data_file, out, 3, "--ckpt.interval", "1", "--on-nonfinite", "skip"))
    assert nan_at_step_1 == [2, 2, 2]  # one micro-batch of both conversations per step
    records = read_metrics(out / "metrics" / "sft.jsonl")
    assert [r["nonfinite"] for r in records] == [0, 1, 0]
    assert [r["nonfinite_steps"] for r in records] == [0, 1, 1]
    after = {s: read_checkpoint_weights(out / "checkpoints" / f"step_{s}" / "trainer") for s in (1, 2, 3)}
    assert all(torch.equal(after[1][k], after[2][k]) for k in after[1])  # step 1's optimizer step was skipped
    assert any(not torch.equal(after[2][k], after[3][k]) for k in after[2])
    state = torch.load(out / "checkpoints" / "step_3" / "trainer" / "trainer_state.pt", weights_only=False)
    assert state["extra"] == {"nonfinite_steps": 1}


def test_on_nonfinite_stop_fails_naming_the_step(tmp_path, tiny_model_dir, data_file, nan_at_step_1, capsys):
    out = tmp_path / "run"
    with pytest.raises(SystemExit) as exit_info:
        main(sft_args(tiny_model_dir, data_file, out, 3))
    assert exit_info.value.code == 1
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert re.match(
        r'^sft: error: FloatingPointError: step 1: non-finite loss nan .*; stopping because on_nonfinite = "stop"', last
    )
    assert [r["step"] for r in read_metrics(out / "metrics" / "sft.jsonl")] == [0]


def test_lora_sft_learns_exports_the_adapter_and_resumes_exactly(tmp_path, tiny_model_dir, data_file):
    lora = ("--model.lora.rank", "8", "--model.lora.alpha", "16", "--model.lora.export-merged")
    full = tmp_path / "full"
    main(sft_args(tiny_model_dir, data_file, full, 6, *lora))
    losses = [r["loss"] for r in read_metrics(full / "metrics" / "sft.jsonl")]
    assert losses[-1] < losses[0] - 0.3  # 10.77 -> 10.26 measured: a rank-8 adapter on a random model learns slowly
    export = full / "weights" / "step_6"
    assert {"adapter_config.json", "adapter_model.safetensors", "tokenizer.json", "merged"} <= {
        p.name for p in export.iterdir()
    }
    merged = AutoModelForCausalLM.from_pretrained(export / "merged")
    initial = dict(AutoModelForCausalLM.from_pretrained(tiny_model_dir).named_parameters())
    changed = {n for n, p in merged.named_parameters() if not torch.equal(p, initial[n])}
    assert changed and all(n.endswith("_proj.weight") for n in changed)  # embeddings and norms untouched

    parts = tmp_path / "parts"
    main(sft_args(tiny_model_dir, data_file, parts, 3, *lora, "--ckpt.interval", "3"))
    main(sft_args(tiny_model_dir, data_file, parts, 6, *lora, "--ckpt.interval", "3", "--ckpt.resume-step", "-1"))
    expected = load_file(export / "adapter_model.safetensors")
    resumed = load_file(parts / "weights" / "step_6" / "adapter_model.safetensors")
    assert expected.keys() == resumed.keys() and all(torch.equal(expected[k], resumed[k]) for k in expected)
    assert [r["loss"] for r in read_metrics(parts / "metrics" / "sft.jsonl")] == losses

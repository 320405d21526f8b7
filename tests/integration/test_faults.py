"""A NaN/inf loss or gradient in the RL trainer: `on_nonfinite = "skip"` leaves the weights as they were and counts
the step; `"stop"` fails naming the step. Either way nothing non-finite reaches a broadcast or a checkpoint."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from prime_rl.trainer.ckpt import read_checkpoint_weights
from prime_rl.trainer.rl.config import RLTrainerConfig
from prime_rl.trainer.rl.train import train
from prime_rl.utils.config import parse_config
from prime_rl.utils.metrics import read_metrics

NAN_LOSS = """
import torch
from prime_rl.trainer.rl.loss import LossInputs, LossOutputs

CALLS = [0]

def nan_at_step(inputs: LossInputs, step: int, per_step: int, value: str = "nan") -> LossOutputs:
    # called once per sequence: the `per_step` calls of training step `step` return a non-finite loss and gradient
    bad = CALLS[0] // per_step == step
    CALLS[0] += 1
    scale = float(value) if bad else -inputs.advantages
    loss = (scale * inputs.trainer_logprobs)[inputs.loss_mask].sum()
    return LossOutputs(loss=loss, metrics={})
"""


def _config(model_dir: Path, tmp_path: Path, policy: str, value: str) -> RLTrainerConfig:
    (tmp_path / "nan_loss.py").write_text(NAN_LOSS)
    sys.modules.pop("nan_loss", None)  # a fresh call counter for every run
    args = ["--model.name", str(model_dir), "--output-dir", str(tmp_path / "out"), "--seq-len", "64",
            "--max-steps", "3", "--ckpt.interval", "1", "--optim.lr", "1e-2", "--log.level", "warning",
            "--weights.no-final", "--data.fake", "--data.fake-batch-size", "2", "--data.fake-prompt-len", "4",
            "--data.fake-completion-len", "6", "--loss.type", "custom", "--loss.import-path", "nan_loss.nan_at_step",
            "--loss.kwargs", f'{{step = 1, per_step = 2, value = "{value}"}}', "--on-nonfinite", policy]  # fmt: skip
    return parse_config(RLTrainerConfig, args)


def _weights(path: Path) -> dict[str, torch.Tensor]:
    """A broadcast's safetensors or a trainer checkpoint's (DCP) model tensors."""
    if (path / "model.safetensors").is_file():
        return load_file(str(path / "model.safetensors"))
    return read_checkpoint_weights(path)


def _all_finite(state: dict[str, torch.Tensor]) -> bool:
    return all(torch.isfinite(t).all() for t in state.values())


@pytest.mark.parametrize("value", ["nan", "inf"])
def test_skip_leaves_weights_unchanged_and_counts(tiny_model_dir, tmp_path, monkeypatch, value):
    monkeypatch.syspath_prepend(str(tmp_path))
    train(_config(tiny_model_dir, tmp_path, "skip", value))
    out = tmp_path / "out"
    records = read_metrics(out / "metrics/trainer.jsonl")
    assert [r["step"] for r in records] == [0, 1, 2]
    assert [r["nonfinite_steps"] for r in records] == [0, 1, 1]
    assert [r["nonfinite"] for r in records] == [0, 1, 0]
    assert not math.isfinite(records[1]["loss"]) and math.isfinite(records[2]["loss"])
    policies = {step: _weights(out / f"broadcasts/step_{step}") for step in (2, 3)}  # keep = max_async_level + 1
    assert all(_all_finite(state) for state in policies.values())
    before = _weights(out / "checkpoints/step_1/trainer")
    skipped = _weights(out / "checkpoints/step_2/trainer")
    for name, tensor in before.items():
        assert torch.equal(skipped[name], tensor), name  # the optimizer did not step on the bad step
    assert not all(torch.equal(policies[3][n], t) for n, t in skipped.items())  # ... and did on the next one
    assert _all_finite(_weights(out / "checkpoints/step_3/trainer"))


def test_stop_fails_naming_the_step_before_anything_is_written(tiny_model_dir, tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(FloatingPointError, match=r"step 1: non-finite loss nan .*trainer.on_nonfinite = \"stop\""):
        train(_config(tiny_model_dir, tmp_path, "stop", "nan"))
    out = tmp_path / "out"
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step_1"]
    assert sorted(p.name for p in (out / "broadcasts").iterdir()) == ["step_1"]
    assert [r["step"] for r in read_metrics(out / "metrics/trainer.jsonl")] == [0]

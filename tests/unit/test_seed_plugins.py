"""The seed document's examples, verbatim, run through the real config path; custom-loss call-time checks."""

from __future__ import annotations

import math
import statistics
import sys

import pytest
import torch

from prime_rl.orchestrator.batch_advantages import compute_advantages
from prime_rl.orchestrator.config import AdvantageConfigType, CustomAdvantageConfig
from prime_rl.trainer.packing import MicroBatch
from prime_rl.trainer.rl.config import CustomLossConfig, LossConfig, LossConfigType
from prime_rl.trainer.rl.loss import compute_loss, compute_micro_batch_loss, setup_loss_fn
from prime_rl.utils.config import BaseSettingsConfig, parse_config

# Copied verbatim from bring-your-own-algorithms.md (the two examples, then the two TOML snippets).
SEED_PPO = """import torch
from prime_rl.trainer.rl.loss import LossInputs, LossOutputs

def ppo_clip_loss(inputs: LossInputs, clip_eps: float = 0.2) -> LossOutputs:
    ratio = torch.exp(inputs.trainer_logprobs - inputs.inference_logprobs)
    clipped_ratio = torch.clamp(ratio, 1 - clip_eps, 1 + clip_eps)

    surr1 = ratio * inputs.advantages
    surr2 = clipped_ratio * inputs.advantages

    loss = -torch.min(surr1, surr2)[inputs.loss_mask].sum()

    return LossOutputs(
        loss=loss,
        metrics={"clip_frac": (ratio != clipped_ratio)[inputs.loss_mask].float().mean()},
    )
"""
SEED_ADVANTAGE = '''import torch
from prime_rl.orchestrator.advantage import AdvantageInputs, AdvantageOutputs

def normalized_advantage(inputs: AdvantageInputs, eps: float = 1e-8) -> AdvantageOutputs:
    """Normalize advantages to zero mean and unit variance per example."""
    mean = inputs.rewards.mean(dim=1, keepdim=True)
    std = inputs.rewards.std(dim=1, keepdim=True)
    advantages = (inputs.rewards - mean) / (std + eps)
    return AdvantageOutputs(advantages=advantages)
'''
SEED_LOSS_TOML = """[loss]
type = "custom"
import_path = "my_module.ppo_clip_loss"
kwargs = { clip_eps = 0.2 }
"""
SEED_ADVANTAGE_TOML = """[advantage]
type = "custom"
import_path = "my_module.normalized_advantage"
kwargs = { eps = 1e-8 }
"""


class PluginConfig(BaseSettingsConfig):
    """Just the two plug-in tables."""

    loss: LossConfigType = LossConfig()
    """Loss."""
    advantage: AdvantageConfigType | None = None
    """Advantage."""


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    """Writes `<name>.py` into a temp working directory, as a user would beside their config."""
    monkeypatch.chdir(tmp_path)
    names = []

    def write(name: str, source: str) -> None:
        (tmp_path / f"{name}.py").write_text(source)
        names.append(name)

    yield write
    for name in names:
        sys.modules.pop(name, None)


def test_seed_examples_verbatim_through_the_config_parser(tmp_path, user_module):
    user_module("my_module", SEED_PPO + "\n\n" + SEED_ADVANTAGE)
    (tmp_path / "loss.toml").write_text(SEED_LOSS_TOML)
    (tmp_path / "advantage.toml").write_text(SEED_ADVANTAGE_TOML)
    config = parse_config(PluginConfig, ["@", "loss.toml", "@", "advantage.toml"])
    assert config.loss == CustomLossConfig(import_path="my_module.ppo_clip_loss", kwargs={"clip_eps": 0.2})
    assert config.advantage == CustomAdvantageConfig(import_path="my_module.normalized_advantage", kwargs={"eps": 1e-8})

    rewards, lengths = [1.0, 0.0, 0.5, 0.25, 0.75, 0.5], [4, 3, 2, 5, 6, 7]
    advantages = compute_advantages(rewards, lengths, 3, config.advantage)
    expected = []
    for group in (rewards[:3], rewards[3:]):
        mean, std = statistics.mean(group), statistics.stdev(group)
        expected += [(r - mean) / (std + 1e-8) for r in group]
    assert advantages == pytest.approx(expected, abs=1e-12)

    # Two sequences: trainer/inference logprobs per token, advantage broadcast, one prompt token masked out.
    trainer = [[-1.0, -0.7, -2.0, -0.1], [-0.3, -1.2]]
    inference = [[0.0, -1.0, -1.9, -0.5], [-0.35, -0.2]]
    masks = [[False, True, True, True], [True, True]]
    seq_adv = [advantages[0], advantages[1]]
    loss_fn = setup_loss_fn(config.loss)
    lp = [torch.tensor(t, dtype=torch.float64, requires_grad=True) for t in trainer]
    loss, metrics = compute_loss(
        lp,
        [torch.tensor(t, dtype=torch.float64) for t in inference],
        None,
        [torch.full((len(t),), a, dtype=torch.float64) for t, a in zip(trainer, seq_adv, strict=True)],
        [torch.tensor(m) for m in masks],
        loss_fn,
        loss_scale=5,
    )

    total, clip_fracs = 0.0, []
    for t_seq, i_seq, m_seq, a in zip(trainer, inference, masks, seq_adv, strict=True):
        clipped = 0
        for t, i, m in zip(t_seq, i_seq, m_seq, strict=True):
            if m:
                ratio = math.exp(t - i)
                clip = min(max(ratio, 0.8), 1.2)
                total -= min(ratio * a, clip * a)
                clipped += ratio != clip
        clip_fracs.append(clipped / sum(m_seq))
    assert loss.item() == pytest.approx(total / 5, abs=1e-12)
    assert metrics["clip_frac"].tolist() == pytest.approx(clip_fracs)
    assert 0 < sum(clip_fracs) < 2  # both clipped and unclipped tokens are exercised

    # The packed entry point gives the same for a custom loss.
    packed = torch.tensor(trainer[0] + trainer[1], dtype=torch.float64, requires_grad=True)
    n = len(trainer[0]) + len(trainer[1])
    micro_batch = MicroBatch(
        input_ids=torch.zeros(n, dtype=torch.long),
        position_ids=torch.zeros(n, dtype=torch.long),
        loss_mask=torch.tensor(masks[0] + masks[1]),
        inference_logprobs=torch.tensor(inference[0] + inference[1], dtype=torch.float64),
        advantages=torch.tensor([seq_adv[0]] * 4 + [seq_adv[1]] * 2, dtype=torch.float64),
        temperatures=torch.ones(n),
        seq_lens=[4, 2],
    )
    loss2, _ = compute_micro_batch_loss(packed, micro_batch, loss_fn, 5)
    assert loss2.item() == pytest.approx(loss.item(), abs=1e-12)


BAD_LOSSES = """
import torch
from prime_rl.trainer.rl.loss import LossOutputs

def returns_dict(inputs):
    return {"loss": inputs.trainer_logprobs.sum()}

def non_scalar(inputs):
    return LossOutputs(loss=-inputs.trainer_logprobs, metrics={})

def no_grad(inputs):
    return LossOutputs(loss=torch.tensor(0.0), metrics={})

def matrix_metric(inputs):
    return LossOutputs(loss=inputs.trainer_logprobs.sum(), metrics={"m": torch.zeros(2, 2)})

def string_metric(inputs):
    return LossOutputs(loss=inputs.trainer_logprobs.sum(), metrics={"m": "high"})

def float_metric(inputs, scale=1.0):
    return LossOutputs(loss=scale * inputs.trainer_logprobs.sum(), metrics={"m": 0.5})
"""


@pytest.mark.parametrize(
    ("fn", "message"),
    [
        ("returns_dict", r"loss function `bad_losses.returns_dict` returned dict, expected LossOutputs"),
        ("non_scalar", r"loss function `bad_losses.non_scalar` returned a non-scalar loss of shape \(2,\)"),
        ("no_grad", r"loss function `bad_losses.no_grad` returned a loss without grad"),
        (
            "matrix_metric",
            r"loss function `bad_losses.matrix_metric` returned metric `m` of shape \(2, 2\), expected a 0-d or 1-d",
        ),
        ("string_metric", r"loss function `bad_losses.string_metric` returned metric `m` of type str"),
    ],
)
def test_custom_loss_call_time_errors_name_the_function(user_module, fn, message):
    user_module("bad_losses", BAD_LOSSES)
    loss_fn = setup_loss_fn(CustomLossConfig(import_path=f"bad_losses.{fn}"))
    lp = torch.tensor([-1.0, -2.0], requires_grad=True)
    with pytest.raises((TypeError, ValueError), match=message):
        compute_loss([lp], [lp.detach()], None, [lp.detach()], [torch.tensor([True, True])], loss_fn, 1.0)


def test_custom_loss_python_float_metric_and_kwargs(user_module):
    user_module("bad_losses", BAD_LOSSES)
    loss_fn = setup_loss_fn(CustomLossConfig(import_path="bad_losses:float_metric", kwargs={"scale": 2.0}))
    lp = torch.tensor([-1.0, -2.0], requires_grad=True)
    mask = torch.tensor([True, True])
    loss, metrics = compute_loss([lp, lp], [lp] * 2, None, [lp] * 2, [mask, mask], loss_fn, 4.0)
    assert loss.item() == pytest.approx(2.0 * -6.0 / 4.0)
    assert metrics["m"].tolist() == [0.5, 0.5]

"""Built-in losses (`ppo_clip`, `gspo`, `cispo`, `reinforce`) pinned on hand-computed values and gradients."""

from __future__ import annotations

import math

import pytest
import torch

from prime_rl.trainer.rl.config import CISPOLossConfig, LossConfigType
from prime_rl.trainer.rl.loss import LossInputs, setup_loss_fn
from prime_rl.trainer.rl.losses import cispo_loss, gspo_loss, ppo_clip_loss, reinforce_loss
from prime_rl.utils.config import BaseSettingsConfig, parse_config


def inputs(ratios, adv, mask=None, lp=None) -> LossInputs:
    n = len(ratios)
    lp = torch.tensor(lp if lp is not None else [-1.0 - i for i in range(n)], dtype=torch.float64)
    log_ratio = torch.log(torch.tensor(ratios, dtype=torch.float64))
    return LossInputs(
        trainer_logprobs=lp.clone().requires_grad_(),
        inference_logprobs=lp - log_ratio,
        teacher_logprobs=None,
        advantages=torch.full((n,), adv, dtype=torch.float64),
        loss_mask=torch.tensor(mask if mask is not None else [True] * n),
    )


def loss_and_grad(fn, inp, **kwargs):
    out = fn(inp, **kwargs)
    (grad,) = torch.autograd.grad(out.loss, inp.trainer_logprobs)
    return out.loss.item(), grad.tolist(), {k: v.tolist() for k, v in out.metrics.items()}


def test_ppo_clip_positive_and_negative_advantage():
    # ratios 1.5 (clipped to 1.2), 0.5 (clipped to 0.8), 1.0; min picks the pessimistic surrogate
    loss, grad, m = loss_and_grad(ppo_clip_loss, inputs([1.5, 0.5, 1.0], adv=1.0))
    assert loss == pytest.approx(-(1.2 + 0.5 + 1.0))
    assert grad == pytest.approx([0.0, -0.5, -1.0])
    assert m["clip_frac"] == pytest.approx(2 / 3)
    loss, grad, _ = loss_and_grad(ppo_clip_loss, inputs([1.5, 0.5, 1.0], adv=-1.0))
    assert loss == pytest.approx(1.5 + 0.8 + 1.0)
    assert grad == pytest.approx([1.5, 0.0, 1.0])


def test_ppo_clip_eps_and_mask():
    loss, grad, m = loss_and_grad(ppo_clip_loss, inputs([1.5, 3.0], adv=1.0, mask=[True, False]), clip_eps=0.6)
    assert loss == pytest.approx(-1.5)
    assert grad == pytest.approx([-1.5, 0.0])
    assert m["clip_frac"] == 0.0


def test_gspo_sequence_ratio_clip():
    # length-normalised ratio exp((0.4 + 0.2) / 2) = e^0.3 > 1.2: clipped for A > 0, not for A < 0
    inp = inputs([math.exp(0.4), math.exp(0.2), 5.0], adv=1.0, mask=[True, True, False])
    loss, grad, m = loss_and_grad(gspo_loss, inp, clip_eps_low=0.2, clip_eps_high=0.2)
    assert loss == pytest.approx(-2 * 1.2)
    assert grad == pytest.approx([0.0, 0.0, 0.0])
    assert m == {"seq_ratio": pytest.approx(math.exp(0.3)), "clip_frac": 1.0}
    inp = inputs([math.exp(0.4), math.exp(0.2), 5.0], adv=-1.0, mask=[True, True, False])
    loss, grad, _ = loss_and_grad(gspo_loss, inp, clip_eps_low=0.2, clip_eps_high=0.2)
    assert loss == pytest.approx(2 * math.exp(0.3))
    assert grad == pytest.approx([math.exp(0.3), math.exp(0.3), 0.0])  # n * s * (1/n) per token


def test_gspo_unclipped_is_token_sum_at_the_sequence_ratio():
    loss, grad, m = loss_and_grad(gspo_loss, inputs([math.exp(1e-4), math.exp(-1e-4)], adv=2.0))
    assert loss == pytest.approx(-4.0)
    assert grad == pytest.approx([-2.0, -2.0])
    assert m["clip_frac"] == 0.0


def test_cispo_clips_the_weight_but_keeps_every_gradient():
    loss, grad, m = loss_and_grad(cispo_loss, inputs([2.0, 0.5, 1.0], adv=1.0))
    assert loss == pytest.approx(1.28 * 1 + 0.5 * 2 + 1.0 * 3)
    assert grad == pytest.approx([-1.28, -0.5, -1.0])
    assert m["clip_frac"] == pytest.approx(1 / 3)
    loss, grad, _ = loss_and_grad(cispo_loss, inputs([2.0, 0.5], adv=-1.0), clip_eps_low=0.2, clip_eps_high=0.5)
    assert loss == pytest.approx(-(1.5 * 1 + 0.8 * 2))
    assert grad == pytest.approx([1.5, 0.8])


def test_reinforce_is_importance_weighted():
    loss, grad, m = loss_and_grad(reinforce_loss, inputs([2.0, 0.5, 9.0], adv=1.5, mask=[True, True, False]))
    assert loss == pytest.approx(-(2.0 + 0.5) * 1.5)
    assert grad == pytest.approx([-3.0, -0.75, 0.0])
    assert m["importance_ratio"] == pytest.approx(1.25)


@pytest.mark.parametrize("fn", [ppo_clip_loss, gspo_loss, cispo_loss, reinforce_loss])
def test_empty_mask_gives_zero_loss_with_grad(fn):
    loss, grad, _ = loss_and_grad(fn, inputs([1.3, 0.7], adv=1.0, mask=[False, False]))
    assert (loss, grad) == (0.0, [0.0, 0.0])


class Config(BaseSettingsConfig):
    loss: LossConfigType = CISPOLossConfig()


def test_selected_by_type_with_their_parameters(tmp_path):
    toml = tmp_path / "loss.toml"
    toml.write_text('[loss]\ntype = "cispo"\nclip_eps_high = 0.5\n')
    config = parse_config(Config, ["@", str(toml)])
    assert config.loss == CISPOLossConfig(clip_eps_high=0.5)
    inp = inputs([2.0, 0.5], adv=1.0)
    assert setup_loss_fn(config.loss)(inp).loss.item() == pytest.approx(1.5 * 1 + 0.5 * 2)
    for kind, fn in {"ppo_clip": ppo_clip_loss, "gspo": gspo_loss, "reinforce": reinforce_loss}.items():
        loss = parse_config(Config, ["--loss.type", kind]).loss
        assert setup_loss_fn(loss)(inp).loss.item() == fn(inp).loss.item()

"""The vectorized default loss of a packed micro-batch equals the per-sequence `compute_loss` (loss, grads, metrics)."""

from __future__ import annotations

import pytest
import torch

from prime_rl.trainer.packing import MicroBatch
from prime_rl.trainer.rl.config import LossConfig
from prime_rl.trainer.rl.loss import LossInputs, LossOutputs, compute_loss, compute_micro_batch_loss, setup_loss_fn

# Each config makes one masking branch fire on part of the random sequences (checked in the test).
CONFIGS = {
    "defaults": ({}, None),
    "token_masks": ({"token_mask_low": 0.8, "token_mask_high": 1.25}, ("is_masked_low", "is_masked_high")),
    "geo_masks": ({"geo_mask_low": 0.95, "geo_mask_high": 1.05}, ("geo_masked_low", "geo_masked_high")),
    "sequence_masks": (
        {"sequence_mask_low": 0.5, "sequence_mask_high": 2.0},
        ("sequence_masked_low", "sequence_masked_high"),
    ),
    "sequence_ratio": ({"ratio_type": "sequence", "sequence_clip_high": 1.5, "geo_mask_high": 1e9}, None),
    "kl_adv_teacher": ({"kl_tau": 0.1, "adv_tau": 0.7, "teacher_tau": 0.3}, None),
}


def random_micro_batch(seed: int, teacher: bool):
    gen = torch.Generator().manual_seed(seed)
    seq_lens = [1, 1, 7, 30, 2, 64, 5, 17, 1, 40]
    n = sum(seq_lens)
    lp = -torch.rand(n, generator=gen, dtype=torch.float64) * 4
    log_ratio = torch.randn(n, generator=gen, dtype=torch.float64) * 0.6
    mask = torch.rand(n, generator=gen) > 0.3
    starts = torch.tensor([0, *seq_lens[:-1]]).cumsum(0)
    mask[starts[3] : starts[3] + seq_lens[3]] = False  # a fully masked sequence
    mask[starts[0]] = True  # a length-1 sequence with one loss token
    mask[starts[1]] = False  # a length-1 sequence without
    adv = torch.repeat_interleave(
        torch.randn(len(seq_lens), generator=gen, dtype=torch.float64), torch.tensor(seq_lens)
    )
    teacher_lp = lp - torch.rand(n, generator=gen, dtype=torch.float64) if teacher else None
    return lp, lp - log_ratio, teacher_lp, adv, mask, seq_lens


def micro_batch(inf_lp, adv, mask, seq_lens) -> MicroBatch:
    """A packed micro-batch carrying the loss's inputs (token ids and temperatures do not enter the loss)."""
    ids = torch.zeros(mask.shape[0], dtype=torch.long)
    return MicroBatch(ids, ids, mask, inf_lp, adv, torch.ones(mask.shape[0]), seq_lens)


def per_sequence(lp, inf_lp, teacher_lp, adv, mask, seq_lens, loss_fn, scale):
    def split(t):
        return list(torch.split(t, seq_lens))

    teachers = split(teacher_lp) if teacher_lp is not None else None
    return compute_loss(split(lp), split(inf_lp), teachers, split(adv), split(mask), loss_fn, scale)


@pytest.mark.parametrize("name", list(CONFIGS))
@pytest.mark.parametrize("seed", [0, 1])
def test_vectorized_default_loss_matches_per_sequence(name, seed):
    cfg_kwargs, branches = CONFIGS[name]
    cfg = LossConfig(**cfg_kwargs)
    loss_fn = setup_loss_fn(cfg)
    lp, inf_lp, teacher_lp, adv, mask, seq_lens = random_micro_batch(seed, teacher=cfg.teacher_tau > 0)

    lp_a = lp.clone().requires_grad_()
    mb = micro_batch(inf_lp, adv, mask, seq_lens)
    loss_a, metrics_a = compute_micro_batch_loss(lp_a, mb, loss_fn, 37.0, teacher_logprobs=teacher_lp)
    (grad_a,) = torch.autograd.grad(loss_a, lp_a)
    lp_b = lp.clone().requires_grad_()
    loss_b, metrics_b = per_sequence(lp_b, inf_lp, teacher_lp, adv, mask, seq_lens, loss_fn, 37.0)
    (grad_b,) = torch.autograd.grad(loss_b, lp_b)

    assert loss_a.ndim == 0
    torch.testing.assert_close(loss_a, loss_b, atol=1e-6, rtol=0)
    torch.testing.assert_close(grad_a, grad_b, atol=1e-6, rtol=0)
    assert metrics_a.keys() == metrics_b.keys()
    for key in metrics_b:
        torch.testing.assert_close(metrics_a[key].double(), metrics_b[key].double(), atol=1e-6, rtol=0, msg=key)
    assert grad_a.abs().sum() > 0
    for branch in branches or ():
        assert 0 < metrics_b[branch].sum() < metrics_b[branch].numel(), f"{branch} fired on none or all"


def test_non_default_loss_is_called_per_sequence():
    calls = []

    def loss_fn(inp: LossInputs) -> LossOutputs:
        calls.append(inp.trainer_logprobs.shape[0])
        return LossOutputs(loss=inp.trainer_logprobs.sum(), metrics={"n": torch.tensor(float(len(calls)))})

    lp = torch.arange(6, dtype=torch.float64).requires_grad_()
    mask = torch.ones(6, dtype=torch.bool)
    loss, metrics = compute_micro_batch_loss(lp, micro_batch(lp, lp, mask, [1, 3, 2]), loss_fn, 5.0)
    assert calls == [1, 3, 2]
    assert loss.item() == 3.0
    assert metrics["n"].tolist() == [1.0, 2.0, 3.0]


def test_seq_lens_must_cover_the_tokens():
    lp = torch.zeros(5)
    with pytest.raises(
        ValueError, match=r"seq_lens must be positive and sum to the 5 tokens, got 2 lengths summing to 4 \(min 2\)"
    ):
        compute_micro_batch_loss(lp, micro_batch(lp, lp, lp > 0, [2, 2]), setup_loss_fn(LossConfig()), 1.0)

"""Batched sampling: reported logprobs, truncations, the min_tokens ban, greedy rows, inverse-CDF draws."""

from __future__ import annotations

import math

import torch

from prime_rl.inference.engines.sampling import SamplingBatch, sample

STOP = torch.tensor([3])


def make_batch(rows: int, **overrides) -> SamplingBatch:
    values = {
        "temperature": torch.ones(rows),
        "top_p": torch.ones(rows),
        "top_k": torch.zeros(rows, dtype=torch.long),
        "min_p": torch.zeros(rows),
        "ban_stop": torch.zeros(rows, dtype=torch.bool),
        "uniform": torch.full((rows,), 0.5),
        "num_top_logprobs": 0,
    }
    values.update(overrides)
    return SamplingBatch(**values)


def logits_of(*probs: list[float]) -> torch.Tensor:
    return torch.tensor(probs).log()


def test_inverse_cdf_picks_the_token_whose_interval_holds_the_uniform():
    logits = logits_of([0.1, 0.2, 0.7, 0.0]).expand(3, -1)
    out = sample(logits, make_batch(3, uniform=torch.tensor([0.05, 0.25, 0.5])), STOP)
    assert out.tokens.tolist() == [0, 1, 2]
    assert torch.allclose(out.logprobs, torch.tensor([0.1, 0.2, 0.7]).log())


def test_logprobs_are_tempered_and_taken_before_truncation():
    logits = torch.tensor([[2.0, 1.0, 0.5, -1.0]])
    batch = make_batch(1, temperature=torch.tensor([0.5]), top_k=torch.tensor([1]), num_top_logprobs=2)
    out = sample(logits, batch, STOP)
    expected = torch.log_softmax(logits / 0.5, dim=-1)
    assert out.tokens.tolist() == [0]
    assert math.isclose(out.logprobs.item(), expected[0, 0].item(), abs_tol=1e-6)
    assert out.top_ids.tolist() == [[0, 1]]
    assert torch.allclose(out.top_logprobs, expected[:, :2])


def test_top_p_keeps_the_smallest_set_reaching_the_mass():
    logits = logits_of([0.5, 0.3, 0.2, 0.0])
    # top_p=0.75 keeps {0, 1} (mass 0.8); u=0.99 lands in token 1's renormalised interval, never in token 2.
    out = sample(logits, make_batch(1, top_p=torch.tensor([0.75]), uniform=torch.tensor([0.99])), STOP)
    assert out.tokens.tolist() == [1]
    assert math.isclose(out.logprobs.item(), math.log(0.3), abs_tol=1e-6)


def test_min_p_drops_tokens_below_the_fraction_of_the_top_probability():
    logits = logits_of([0.6, 0.25, 0.15, 0.0])
    out = sample(logits, make_batch(1, min_p=torch.tensor([0.5]), uniform=torch.tensor([0.999])), STOP)
    assert out.tokens.tolist() == [0]


def test_min_tokens_ban_hides_stop_tokens_only_for_banned_rows():
    logits = logits_of([0.01, 0.01, 0.01, 0.97]).expand(2, -1)
    out = sample(logits, make_batch(2, ban_stop=torch.tensor([True, False])), STOP)
    assert out.tokens[0].item() != 3
    assert out.tokens[1].item() == 3


def test_greedy_rows_take_the_argmax_with_untempered_logprobs():
    logits = torch.tensor([[0.0, 3.0, 1.0, 0.0], [0.0, 3.0, 1.0, 0.0]])
    batch = make_batch(2, temperature=torch.tensor([0.0, 1.0]), uniform=torch.tensor([0.999, 0.999]))
    out = sample(logits, batch, STOP)
    assert out.tokens.tolist()[0] == 1
    assert math.isclose(out.logprobs[0].item(), torch.log_softmax(logits[0], -1)[1].item(), abs_tol=1e-6)


def test_a_row_does_not_depend_on_the_other_rows():
    torch.manual_seed(0)
    logits = torch.randn(5, 100)
    uniform = torch.rand(5)
    full = sample(logits, make_batch(5, uniform=uniform, top_p=torch.full((5,), 0.9)), STOP)
    solo = sample(logits[2:3], make_batch(1, uniform=uniform[2:3], top_p=torch.tensor([0.9])), STOP)
    assert full.tokens[2].item() == solo.tokens[0].item()

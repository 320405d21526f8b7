"""Chunked logprobs/entropy equal the full log-softmax (values and gradients); packed rows equal unpacked samples."""

from __future__ import annotations

import pytest
import torch

from prime_rl.trainer.config import TrainerModelConfig
from prime_rl.trainer.logprobs import chunked_logprobs, packed_logprobs
from prime_rl.trainer.model import setup_model


def test_chunked_logprobs_match_full_log_softmax_values_and_grads():
    torch.manual_seed(0)
    n, hidden, vocab = 37, 16, 101
    h = torch.randn(n, hidden, dtype=torch.float64, requires_grad=True)
    w = torch.randn(vocab, hidden, dtype=torch.float64, requires_grad=True)
    b = torch.randn(vocab, dtype=torch.float64, requires_grad=True)
    labels = torch.randint(0, vocab, (n,))
    temps = torch.rand(n, dtype=torch.float64) + 0.5
    upstream = torch.randn(n, dtype=torch.float64)

    logits = (h @ w.T + b) / temps[:, None]
    full = torch.log_softmax(logits, -1)
    ref_lp = full.gather(1, labels[:, None])[:, 0]
    ref_ent = -(full.exp() * full).sum(-1)
    ref_grads = torch.autograd.grad((ref_lp * upstream).sum(), (h, w, b))

    lp, ent = chunked_logprobs(h, w, b, labels, temps, chunk_size=8)
    grads = torch.autograd.grad((lp * upstream).sum(), (h, w, b))

    assert not ent.requires_grad
    torch.testing.assert_close(lp.double(), ref_lp, atol=1e-5, rtol=0)
    torch.testing.assert_close(ent.double(), ref_ent, atol=1e-5, rtol=0)
    for got, ref in zip(grads, ref_grads, strict=True):
        torch.testing.assert_close(got, ref, atol=1e-5, rtol=0)


@pytest.mark.parametrize("attn, lens", [("varlen", [6, 9, 4, 9]), ("varlen", [7, 7, 7]), ("sdpa", [6, 9, 4, 9])])
def test_packed_logprobs_equal_unpacked(tiny_model_dir, attn, lens):
    # float64: float32 matmuls of different shapes round differently (~1e-5 on ~10-nat logprobs), which would hide
    # what this test is about (no attention across packed samples).
    model = setup_model(TrainerModelConfig(name=str(tiny_model_dir), attn_implementation=attn)).double()
    torch.manual_seed(1)
    samples = [torch.randint(0, 5000, (n,)) for n in lens]
    temps = [torch.full((n,), t, dtype=torch.float64) for n, t in zip(lens, [0.7, 1.0, 1.3, 0.5], strict=False)]

    packed_lp, packed_ent = packed_logprobs(
        model,
        torch.cat(samples),
        torch.cat([torch.arange(n) for n in lens]),
        torch.cat(temps),
        lens,
        chunk_size=5,
    )
    # Restricting the LM head to some rows (the trainer passes the loss mask) leaves those values unchanged.
    only = torch.rand(sum(lens)) < 0.5
    only_lp, only_ent = packed_logprobs(
        model, torch.cat(samples), torch.cat([torch.arange(n) for n in lens]), torch.cat(temps), lens, 5, only=only
    )
    torch.testing.assert_close(only_lp, torch.where(only, packed_lp, 0.0), atol=1e-12, rtol=0)
    torch.testing.assert_close(only_ent, torch.where(only, packed_ent, 0.0), atol=1e-12, rtol=0)
    for i, (ids, temp) in enumerate(zip(samples, temps, strict=True)):
        start, n = sum(lens[:i]), lens[i]
        alone_lp, alone_ent = packed_logprobs(model, ids, torch.arange(n), temp, [n], chunk_size=5)
        torch.testing.assert_close(packed_lp[start : start + n], alone_lp, atol=1e-5, rtol=0)
        torch.testing.assert_close(packed_ent[start : start + n], alone_ent, atol=1e-5, rtol=0)
        # And both agree with the full-vocabulary log-softmax of the HF logits.
        logits = model(input_ids=ids[None]).logits[0, :-1] / temp[1:, None]
        full = torch.log_softmax(logits, -1)
        zero = torch.zeros(1, dtype=torch.float64)
        ref_lp = torch.cat([zero, full.gather(1, ids[1:, None])[:, 0]])
        ref_ent = torch.cat([zero, -(full.exp() * full).sum(-1)])
        torch.testing.assert_close(alone_lp, ref_lp, atol=1e-5, rtol=0)
        torch.testing.assert_close(alone_ent, ref_ent, atol=1e-5, rtol=0)

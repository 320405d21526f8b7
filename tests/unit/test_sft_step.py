"""The SFT step (the shared step with the SFT loss): HF's token-mean cross-entropy on the masked tokens, independent
of packing; a non-finite step skips the optimizer and `on_nonfinite` decides between stopping and skipping."""

from __future__ import annotations

import logging

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from prime_rl.trainer.attention import register_varlen_attention
from prime_rl.trainer.packing import pack_samples
from prime_rl.trainer.sft.data import to_sample
from prime_rl.trainer.sft.loss import SFT_LOSS
from prime_rl.trainer.step import check_finite, forward_backward, train_step


def tiny_model(seed: int = 0) -> LlamaForCausalLM:
    register_varlen_attention()
    config = LlamaConfig(
        vocab_size=96,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        attn_implementation="varlen",
    )
    torch.manual_seed(seed)
    return LlamaForCausalLM(config).float()


def samples():
    gen = torch.Generator().manual_seed(1)
    out = []
    for length, start in ((9, 4), (6, 2), (12, 7), (5, 1)):
        ids = torch.randint(0, 96, (length,), generator=gen).tolist()
        out.append(to_sample(ids, [i >= start for i in range(length)]))
    return out


def hf_reference_loss(model, batch) -> float:
    """Cross-entropy over the masked tokens of the batch, by HF on unpacked sequences (labels -100 elsewhere)."""
    total, count = 0.0, 0
    for s in batch:
        ids = torch.tensor([s.completion_ids])
        labels = torch.tensor([[t if m else -100 for t, m in zip(s.completion_ids, s.completion_mask, strict=True)]])
        n = int(labels[:, 1:].ne(-100).sum())
        with torch.no_grad():
            out = model(input_ids=ids, labels=labels)
        total, count = total + float(out.loss) * n, count + n
    return total / count


def grads(model) -> dict[str, torch.Tensor]:
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def test_loss_equals_hf_cross_entropy_and_gradient_does_not_depend_on_packing():
    model, batch = tiny_model(), samples()
    packed = pack_samples(batch, seq_len=64)
    alone = pack_samples(batch, seq_len=12)
    assert (len(packed), len(alone)) == (1, 3)  # lengths 9, 6, 12, 5 in bins of 12: [12], [9], [6, 5]
    loss_packed, metrics = forward_backward(model, packed, SFT_LOSS, chunk_size=7)
    g_packed = grads(model)
    model.zero_grad(set_to_none=True)
    loss_alone, _ = forward_backward(model, alone, SFT_LOSS, chunk_size=1024)
    g_alone = grads(model)
    assert loss_packed == pytest.approx(hf_reference_loss(model, batch), rel=1e-5)
    assert loss_alone == pytest.approx(loss_packed, rel=1e-5)
    assert g_packed.keys() == g_alone.keys()
    for name in g_packed:
        torch.testing.assert_close(g_packed[name], g_alone[name], rtol=1e-4, atol=1e-6)
    assert sum(len(e) for e in metrics["entropy"]) == sum(mb.num_loss_tokens for mb in packed) == 5 + 4 + 5 + 4


def test_step_updates_parameters_and_skips_the_optimizer_on_a_nonfinite_gradient(caplog):
    model, batch = tiny_model(), samples()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    before = [p.detach().clone() for p in model.parameters()]
    result = train_step(model, optimizer, scheduler, pack_samples(batch, 64), SFT_LOSS, max_norm=None, chunk_size=1024)
    assert (result.num_tokens, result.num_loss_tokens, result.lr, result.finite) == (32, 18, 0.1, True)
    assert any(not torch.equal(b, p) for b, p in zip(before, model.parameters(), strict=True))
    with torch.no_grad():
        model.model.embed_tokens.weight[0, 0] = float("nan")
    nan_batch = [to_sample([0, 1, 2], [False, True, True])]
    frozen = [p.detach().clone() for p in model.parameters()]
    result = train_step(model, optimizer, scheduler, pack_samples(nan_batch, 64), SFT_LOSS, max_norm=1.0, chunk_size=1)
    assert not result.finite
    assert all(torch.equal(b, p) or torch.isnan(b).any() for b, p in zip(frozen, model.parameters(), strict=True))

    logger = logging.getLogger("prime_rl.sft")
    with pytest.raises(
        FloatingPointError,
        match=r'^step 3: non-finite loss nan \(gradient norm nan\); stopping because on_nonfinite = "stop" '
        r'\(set "skip" to skip such steps\)$',
    ):
        check_finite(result, 3, "stop", "on_nonfinite", logger)
    with caplog.at_level(logging.WARNING, logger="prime_rl.sft"):
        check_finite(result, 3, "skip", "on_nonfinite", logger)
    assert caplog.messages == ["step 3: non-finite loss nan or gradient norm; optimizer step skipped"]

"""The input embedding's in-place gradient (`trainer/in_place_grad.py`): the same outputs and gradients as
`nn.Embedding`, with the padding row left alone, and only where the in-place add is safe."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import prime_rl.trainer.in_place_grad as in_place_grad
from prime_rl.trainer.in_place_grad import in_place_grads, use_in_place_embedding_grad

IDS = torch.tensor([[3, 1, 3, 0], [7, 3, 0, 1]])  # repeated tokens and the padding id 0


class Wrapper(nn.Module):
    def __init__(self, embedding: nn.Embedding):
        super().__init__()
        self.embedding = embedding

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embedding


@pytest.mark.parametrize("padding_idx", [None, 0])
def test_embedding_gradients_accumulated_in_place_equal_nn_embeddings(padding_idx, monkeypatch):
    torch.manual_seed(0)
    reference = nn.Embedding(10, 4, padding_idx=padding_idx, dtype=torch.float64)
    ours = nn.Embedding(10, 4, padding_idx=padding_idx, dtype=torch.float64)
    ours.load_state_dict(reference.state_dict())
    assert use_in_place_embedding_grad(Wrapper(ours))
    taken = []
    accumulated = in_place_grad.accumulated_grad
    monkeypatch.setattr(
        in_place_grad, "accumulated_grad", lambda w, dtype: taken.append(accumulated(w, dtype)) or taken[-1]
    )
    for micro_batch in range(3):
        upstream = torch.randn(*IDS.shape, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(micro_batch))
        with in_place_grads():
            out = ours(IDS)
        (out * upstream).sum().backward()
        (reference(IDS) * upstream).sum().backward()
        torch.testing.assert_close(out, reference(IDS), rtol=0, atol=0)
        if micro_batch == 0:  # no gradient yet: autograd's own kernel, bit for bit
            assert torch.equal(ours.weight.grad, reference.weight.grad)
        torch.testing.assert_close(ours.weight.grad, reference.weight.grad, rtol=1e-15, atol=1e-15)
    assert [t is not None for t in taken] == [False, True, True]  # in place from the second micro-batch on
    if padding_idx is not None:
        assert not ours.weight.grad[padding_idx].any()


def test_embedding_gradient_not_added_in_place_outside_the_context_or_under_a_hook():
    """Outside `in_place_grads` (e.g. before `torch.autograd.grad`) or with a hook on the weight, autograd
    accumulates: `.grad` is left alone by `autograd.grad`, and a hook sees the gradient."""
    embedding = nn.Embedding(10, 4, dtype=torch.float64)
    assert use_in_place_embedding_grad(Wrapper(embedding))
    ones = torch.ones(IDS.numel(), 4, dtype=torch.float64)
    expected = torch.zeros_like(embedding.weight).index_add_(0, IDS.reshape(-1), ones)
    embedding(IDS).sum().backward()
    embedding(IDS).sum().backward()
    assert torch.equal(embedding.weight.grad, 2 * expected)
    (grad,) = torch.autograd.grad(embedding(IDS).sum(), embedding.weight)
    assert torch.equal(grad, expected) and torch.equal(embedding.weight.grad, 2 * expected)
    seen = []
    embedding.weight.register_hook(seen.append)
    with in_place_grads():
        out = embedding(IDS)
    out.sum().backward()
    assert len(seen) == 1 and torch.equal(seen[0], expected)
    assert torch.equal(embedding.weight.grad, 3 * expected)


@pytest.mark.parametrize(
    "kwargs", [{"max_norm": 1.0}, {"scale_grad_by_freq": True}, {"sparse": True}], ids=["max_norm", "freq", "sparse"]
)
def test_embeddings_with_other_semantics_keep_their_forward(kwargs):
    embedding = nn.Embedding(10, 4, **kwargs)
    assert use_in_place_embedding_grad(Wrapper(embedding)) is False
    assert "forward" not in vars(embedding)

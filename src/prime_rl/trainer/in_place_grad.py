"""Gradients of the two [vocab, hidden] weights, the LM head (`logprobs.ChunkedLogprobs`) and the input embedding
(`EmbeddingLookup`), added into `weight.grad` in place during `.backward()`.

Autograd hands each of them to the parameter as a fresh [vocab, hidden] tensor and then adds it to `weight.grad`.
From a step's second micro-batch on, `weight.grad` exists, and that buffer (108 MiB for SmolLM2's embedding) is one
more allocation at the step's memory peak, when the micro-batch's activations are still alive."""

from __future__ import annotations

import contextlib
import contextvars
import types
from collections.abc import Iterator

import torch
from jaxtyping import Float, Int
from torch import Tensor, nn

_IN_PLACE = contextvars.ContextVar("in_place_grads", default=False)


@contextlib.contextmanager
def in_place_grads() -> Iterator[None]:
    """Forwards run under this are followed by `.backward()` (never `torch.autograd.grad`), so their LM-head and
    embedding gradients may be added into `weight.grad` in place (`accumulated_grad`)."""
    token = _IN_PLACE.set(True)
    try:
        yield
    finally:
        _IN_PLACE.reset(token)


def in_place_allowed() -> bool:
    """Whether the forward running now is under `in_place_grads` (autograd functions record it for their backward)."""
    return _IN_PLACE.get()


def accumulated_grad(weight: Tensor, dtype: torch.dtype) -> Tensor | None:
    """`weight.grad` when a gradient can be added into it in place: a plain tensor gradient of `dtype`, no hooks and
    no double backward; None otherwise (the first micro-batch, FSDP's sharded or unsharded parameters, LoRA)."""
    grad = weight.grad
    plain = type(weight) is torch.nn.Parameter and grad is not None and type(grad) is Tensor
    hooked = bool(weight._backward_hooks) or bool(getattr(weight, "_post_accumulate_grad_hooks", None))
    if not plain or hooked or torch.is_grad_enabled() or grad.dtype != dtype or not grad.is_contiguous():
        return None
    return grad


class EmbeddingLookup(torch.autograd.Function):
    """(ids [...], weight [V, H], padding_idx) -> weight[ids] [..., H], like `F.embedding` without max_norm or
    scale_grad_by_freq; the backward adds into `weight.grad` when `accumulated_grad` allows it."""

    @staticmethod
    def forward(ctx, ids: Tensor, weight: Tensor, padding_idx: int | None) -> Tensor:
        ctx.save_for_backward(ids, weight)
        ctx.padding_idx = padding_idx
        ctx.in_place = in_place_allowed()
        return torch.nn.functional.embedding(ids, weight, padding_idx)

    @staticmethod
    def backward(ctx, grad_out: Tensor) -> tuple[None, Tensor | None, None]:
        ids, weight = ctx.saved_tensors
        if not ctx.needs_input_grad[1]:
            return None, None, None
        padding_idx = -1 if ctx.padding_idx is None else ctx.padding_idx
        into = accumulated_grad(weight, grad_out.dtype) if ctx.in_place else None
        if into is None:  # autograd's own kernel
            grad = torch.ops.aten.embedding_dense_backward(grad_out, ids, weight.shape[0], padding_idx, False)
            return None, grad, None
        flat, rows = ids.reshape(-1), grad_out.reshape(-1, grad_out.shape[-1])
        if ctx.padding_idx is not None:  # the padding row gets no gradient, as in F.embedding
            keep = flat != padding_idx
            flat, rows = flat[keep], rows[keep]
        into.index_add_(0, flat, rows)
        return None, None, None


def _embedding_forward(module: nn.Embedding, ids: Int[Tensor, "..."]) -> Float[Tensor, "... hidden"]:
    return EmbeddingLookup.apply(ids, module.weight, module.padding_idx)


def use_in_place_embedding_grad(model: nn.Module) -> bool:
    """Gives `model`'s input embedding the in-place backward if it is a plain `nn.Embedding` (no max_norm,
    scale_grad_by_freq or sparse gradient); returns whether it did."""
    embedding = model.get_input_embeddings()
    other = embedding.max_norm is not None or embedding.scale_grad_by_freq or embedding.sparse
    if type(embedding) is not nn.Embedding or other:
        return False
    embedding.forward = types.MethodType(_embedding_forward, embedding)
    return True

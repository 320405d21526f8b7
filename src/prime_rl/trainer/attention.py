"""`varlen` attention for packed micro-batches: causal SDPA run separately on each packed sample.

A block-diagonal mask over a packed row of `T` tokens costs `T^2` per head; running SDPA per sample costs
`sum(len_i^2)` and never mixes samples. The sample boundaries arrive as `cu_seq_lens_q` (the same keyword the
flash-attention path of transformers uses), so one call site serves both.
"""

from __future__ import annotations

import itertools

import torch
from torch import Tensor
from torch.nn.functional import scaled_dot_product_attention
from transformers import AttentionInterface

VARLEN = "varlen"


def _boundaries(cu_seq_lens: Tensor, total: int) -> list[int]:
    bounds = [int(b) for b in cu_seq_lens.tolist()]
    if bounds[0] != 0 or bounds[-1] != total:
        raise ValueError(f"cu_seq_lens_q {bounds} does not cover the {total} packed tokens")
    return bounds


def varlen_sdpa_forward(
    module: torch.nn.Module,
    query: Tensor,
    key: Tensor,
    value: Tensor,
    attention_mask: Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    cu_seq_lens_q: Tensor | None = None,
    **kwargs,
) -> tuple[Tensor, None]:
    """query/key/value: [1, heads, T, head_dim] (packed). Returns [1, T, heads, head_dim] like transformers' sdpa."""
    gqa = query.shape[1] != key.shape[1]
    if cu_seq_lens_q is None:
        # Not packed (e.g. a plain `model(input_ids)` call): ordinary causal attention over each row.
        out = scaled_dot_product_attention(
            query, key, value, dropout_p=dropout, scale=scaling, is_causal=True, enable_gqa=gqa
        )
        return out.transpose(1, 2).contiguous(), None
    if query.shape[0] != 1:
        raise ValueError(f"varlen attention packs samples into one row, got a batch of {query.shape[0]}")
    bounds = _boundaries(cu_seq_lens_q, query.shape[2])
    lengths = [e - s for s, e in itertools.pairwise(bounds)]
    if len(set(lengths)) == 1:
        # Equal lengths: one batched call over the samples instead of a loop.
        n, length = len(lengths), lengths[0]

        def fold(t: Tensor) -> Tensor:
            return t.reshape(t.shape[1], n, length, t.shape[3]).transpose(0, 1)

        out = scaled_dot_product_attention(
            fold(query), fold(key), fold(value), dropout_p=dropout, scale=scaling, is_causal=True, enable_gqa=gqa
        )
        return out.transpose(1, 2).reshape(1, n * length, out.shape[1], out.shape[3]), None
    parts = [
        scaled_dot_product_attention(
            query[:, :, s:e],
            key[:, :, s:e],
            value[:, :, s:e],
            dropout_p=dropout,
            scale=scaling,
            is_causal=True,
            enable_gqa=gqa,
        )
        for s, e in itertools.pairwise(bounds)
    ]
    return torch.cat(parts, dim=2).transpose(1, 2).contiguous(), None


def register_varlen_attention() -> str:
    """Registers `varlen` with transformers (idempotent) and returns its name."""
    AttentionInterface.register(VARLEN, varlen_sdpa_forward)
    return VARLEN

"""`varlen` attention for packed micro-batches: causal SDPA run separately on each packed segment.

A block-diagonal mask over a packed row of `T` tokens costs `T^2` per head; running SDPA per segment costs
`sum(len_i^2)` and never mixes segments. The segment boundaries arrive as `cu_seq_lens_q` (the same keyword the
flash-attention path of transformers uses), so one call site serves both. A segment holding a group's prompt once
followed by its completions comes with its own mask in `segment_masks` (`prompt_tree_mask`).
"""

from __future__ import annotations

import itertools

import torch
from jaxtyping import Bool
from torch import Tensor
from torch.nn.functional import scaled_dot_product_attention
from transformers import AttentionInterface

VARLEN = "varlen"


def prompt_tree_mask(
    prompt_len: int, completion_lens: list[int], device: torch.device | None = None
) -> Bool[Tensor, "n n"]:
    """Mask (True: may attend) of a prompt followed by its completions: prompt tokens attend causally to the prompt,
    each completion token to the whole prompt and to its own completion's earlier tokens, never to another one."""
    lens = torch.tensor([prompt_len, *completion_lens], device=device)
    branch = torch.repeat_interleave(torch.arange(len(lens), device=device), lens)
    index = torch.arange(branch.shape[0], device=device)
    causal = index[:, None] >= index[None, :]
    return causal & ((branch[:, None] == branch[None, :]) | (branch[None, :] == 0))


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
    segment_masks: list[Tensor | None] | None = None,
    **kwargs,
) -> tuple[Tensor, None]:
    """query/key/value: [1, heads, T, head_dim] (packed). Returns [1, T, heads, head_dim] like transformers' sdpa.

    `segment_masks`: one entry per segment of `cu_seq_lens_q`, a [len, len] boolean mask or None (causal)."""
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
    masks = segment_masks if segment_masks is not None else [None] * len(lengths)
    if len(masks) != len(lengths):
        raise ValueError(f"segment_masks has {len(masks)} entries for {len(lengths)} segments in cu_seq_lens_q")
    if len(set(lengths)) == 1 and all(m is None for m in masks):
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
            attn_mask=mask,
            dropout_p=dropout,
            scale=scaling,
            is_causal=mask is None,
            enable_gqa=gqa,
        )
        for (s, e), mask in zip(itertools.pairwise(bounds), masks, strict=True)
    ]
    return torch.cat(parts, dim=2).transpose(1, 2).contiguous(), None


def register_varlen_attention() -> str:
    """Registers `varlen` with transformers (idempotent) and returns its name."""
    AttentionInterface.register(VARLEN, varlen_sdpa_forward)
    return VARLEN

"""Batched next-token sampling with per-row settings, and the logprobs reported for the sampled tokens.

Reported logprobs are `log_softmax(logits / temperature)` over the full vocabulary, *before* top-k, top-p, min-p and
the `min_tokens` ban on stop tokens: that is the distribution the trainer recomputes (it divides its logits by the
same temperature). Temperature 0 samples greedily and reports the untempered `log_softmax(logits)`.
Sampling draws one uniform per row from that sequence's own generator and inverts the truncated CDF, so a seeded
sequence does not depend on what else is in the batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from prime_rl.inference.engines.base import SamplingParams


@dataclass
class SamplingBatch:
    """Settings of every row of a decode step, as tensors."""

    temperature: Float[Tensor, " batch"]
    top_p: Float[Tensor, " batch"]
    top_k: Int[Tensor, " batch"]
    min_p: Float[Tensor, " batch"]
    ban_stop: Bool[Tensor, " batch"]
    """Rows that have not reached `min_tokens` yet: their stop tokens cannot be sampled."""
    uniform: Float[Tensor, " batch"]
    num_top_logprobs: int


def sampling_batch(
    params: list[SamplingParams], generated: list[int], uniform: list[float], device: torch.device
) -> SamplingBatch:
    """The settings of each row: its request's parameters, its tokens so far (for `min_tokens`) and its uniform draw."""
    return SamplingBatch(
        temperature=torch.tensor([p.temperature for p in params], device=device),
        top_p=torch.tensor([p.top_p for p in params], device=device),
        top_k=torch.tensor([p.top_k for p in params], device=device),
        min_p=torch.tensor([p.min_p for p in params], device=device),
        ban_stop=torch.tensor([g < p.min_tokens for g, p in zip(generated, params, strict=True)]).to(device),
        uniform=torch.tensor(uniform, device=device),
        num_top_logprobs=max(p.top_logprobs for p in params),
    )


@dataclass
class SampledTokens:
    tokens: Int[Tensor, " batch"]
    logprobs: Float[Tensor, " batch"]
    top_ids: Int[Tensor, "batch k"] | None
    top_logprobs: Float[Tensor, "batch k"] | None


def _top_k_top_p(
    probs: Float[Tensor, "rows vocab"], top_p: Float[Tensor, " rows"], top_k: Int[Tensor, " rows"]
) -> Float[Tensor, "rows vocab"]:
    """Zeroes tokens outside the top-k, then outside the smallest set holding `top_p` of the remaining mass."""
    sorted_probs, order = probs.sort(dim=-1, descending=True)
    ranks = torch.arange(probs.shape[-1], device=probs.device)
    sorted_probs = sorted_probs.masked_fill((top_k[:, None] > 0) & (ranks[None, :] >= top_k[:, None]), 0.0)
    cum = sorted_probs.cumsum(dim=-1)
    # A token is dropped when the mass strictly before it already reaches top_p, so the top token always stays.
    drop = (cum - sorted_probs) >= top_p[:, None] * cum[:, -1:]
    sorted_probs = sorted_probs.masked_fill(drop, 0.0)
    return torch.zeros_like(probs).scatter_(1, order, sorted_probs)


def sample(
    logits: Float[Tensor, "batch vocab"], batch: SamplingBatch, stop_ids: Int[Tensor, " n_stop"]
) -> SampledTokens:
    """Samples one token per row; see the module docstring for which logprobs are reported."""
    logits = logits.float()
    greedy = batch.temperature == 0
    temperature = torch.where(greedy, torch.ones_like(batch.temperature), batch.temperature)
    logprobs = torch.log_softmax(logits / temperature[:, None], dim=-1)
    probs = logprobs.exp()
    if batch.ban_stop.any():
        rows = batch.ban_stop.nonzero()[:, 0]
        probs[rows[:, None], stop_ids[None, :]] = 0.0
    truncate = (batch.top_p < 1.0) | (batch.top_k > 0)
    if truncate.any():
        rows = truncate.nonzero()[:, 0]
        probs[rows] = _top_k_top_p(probs[rows], batch.top_p[rows], batch.top_k[rows])
    if (batch.min_p > 0).any():
        floor = batch.min_p[:, None] * probs.max(dim=-1, keepdim=True).values
        probs = probs.masked_fill(probs < floor, 0.0)
    tokens = probs.argmax(dim=-1)
    if not bool(greedy.all()):
        cdf = probs.cumsum(dim=-1)
        target = (batch.uniform * cdf[:, -1])[:, None]
        drawn = torch.searchsorted(cdf, target, right=True)[:, 0].clamp_(max=probs.shape[-1] - 1)
        # Float rounding at the very top of the CDF can land on a zero-probability tail token.
        drawn = torch.where(probs.gather(1, drawn[:, None])[:, 0] > 0, drawn, tokens)
        tokens = torch.where(greedy, tokens, drawn)
    chosen = logprobs.gather(1, tokens[:, None])[:, 0]
    top_ids = top_lp = None
    if batch.num_top_logprobs > 0:
        top_lp, top_ids = logprobs.topk(batch.num_top_logprobs, dim=-1)
    return SampledTokens(tokens=tokens, logprobs=chosen, top_ids=top_ids, top_logprobs=top_lp)

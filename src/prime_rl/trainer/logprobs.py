"""Per-token logprobs and entropies of packed sequences, with each token's sampling temperature, in vocab chunks.

Logprob of token t comes from the logits at t-1 divided by token t's temperature. The LM head and log-softmax run
chunk by chunk in a custom autograd function that saves only the hidden states and one logsumexp per token; the
backward recomputes each chunk's logits, so no [tokens, vocab] float32 tensor outlives one chunk.
"""

from __future__ import annotations

import itertools

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from prime_rl.trainer.attention import VARLEN, prompt_tree_mask
from prime_rl.trainer.in_place_grad import accumulated_grad, in_place_allowed
from prime_rl.trainer.packing import Segment, SharedPrompts


def _acc_dtype(dtype: torch.dtype) -> torch.dtype:
    """Softmax math runs in float32 at least (bf16 logits lose too much in logsumexp)."""
    return torch.promote_types(dtype, torch.float32)


def _scaled_logits(hidden: Tensor, weight: Tensor, bias: Tensor | None, inv_temps: Tensor) -> Tensor:
    # (h W^T + b) / T == (h / T) W^T + b / T: scaling the [n, hidden] side is ~vocab/hidden times cheaper.
    scale = inv_temps[:, None].to(hidden.dtype)
    logits = (hidden * scale) @ weight.T
    if bias is not None:
        logits = logits + bias * scale
    return logits.to(_acc_dtype(logits.dtype))


class ChunkedLogprobs(torch.autograd.Function):
    """(hidden [N, H], weight [V, H], bias [V] | None, labels [N], inv_temps [N]) -> (logprobs [N], entropy [N])."""

    @staticmethod
    def forward(ctx, hidden, weight, bias, labels, inv_temps, chunk_size: int):
        n = hidden.shape[0]
        logprobs = torch.empty(n, dtype=_acc_dtype(hidden.dtype), device=hidden.device)
        entropy = torch.empty_like(logprobs)
        lse = torch.empty_like(logprobs)
        for s in range(0, n, chunk_size):
            e = min(s + chunk_size, n)
            z = _scaled_logits(hidden[s:e], weight, bias, inv_temps[s:e])
            logp = torch.log_softmax(z, dim=-1)
            label = labels[s:e, None]
            logprobs[s:e] = logp.gather(1, label)[:, 0]
            lse[s:e] = z.gather(1, label)[:, 0] - logprobs[s:e]
            p = torch.exp(logp, out=z)
            entropy[s:e] = -torch.einsum("nv,nv->n", p, logp)
        ctx.save_for_backward(hidden, weight, bias, labels, inv_temps, lse)
        ctx.chunk_size = chunk_size
        ctx.in_place = in_place_allowed()
        ctx.mark_non_differentiable(entropy)
        return logprobs, entropy

    @staticmethod
    def backward(ctx, grad_logprobs, _grad_entropy):
        hidden, weight, bias, labels, inv_temps, lse = ctx.saved_tensors
        need_h, need_w, need_b = ctx.needs_input_grad[:3]
        acc = _acc_dtype(weight.dtype)
        grad_h = torch.empty_like(hidden) if need_h else None
        into = accumulated_grad(weight, acc) if need_w and ctx.in_place else None
        grad_w = into if into is not None else torch.zeros_like(weight, dtype=acc) if need_w else None
        grad_b = torch.zeros_like(bias, dtype=acc) if need_b else None
        n, chunk_size = hidden.shape[0], ctx.chunk_size
        for s in range(0, n, chunk_size):
            e = min(s + chunk_size, n)
            scale = inv_temps[s:e, None].to(hidden.dtype)
            z = _scaled_logits(hidden[s:e], weight, bias, inv_temps[s:e])
            # d logprob / d z = onehot(label) - softmax(z), computed in place in the logits buffer.
            g = grad_logprobs[s:e, None].to(z.dtype)
            dz = z.sub_(lse[s:e, None]).exp_().mul_(-g)
            dz.scatter_add_(1, labels[s:e, None], g)
            dz = dz.to(hidden.dtype)
            if need_h:
                grad_h[s:e] = (dz @ weight) * scale
            if need_w:
                grad_w.addmm_(dz.T.to(acc), (hidden[s:e] * scale).to(acc))
            if need_b:
                grad_b += (dz * scale).sum(0).to(acc)
        grad_w = grad_w.to(weight.dtype) if need_w and into is None else None
        grad_b = grad_b.to(bias.dtype) if need_b else None
        return grad_h, grad_w, grad_b, None, None, None


def chunked_logprobs(
    hidden: Float[Tensor, "n hidden"],
    weight: Float[Tensor, "vocab hidden"],
    bias: Float[Tensor, " vocab"] | None,
    labels: Int[Tensor, " n"],
    temperatures: Float[Tensor, " n"],
    chunk_size: int = 1024,
) -> tuple[Float[Tensor, " n"], Float[Tensor, " n"]]:
    """log softmax(hidden @ weight.T / T)[label] and the entropy of that distribution (no grad), per row."""
    inv_temps = (1.0 / temperatures).to(_acc_dtype(hidden.dtype))
    return ChunkedLogprobs.apply(hidden, weight, bias, labels, inv_temps, chunk_size)


def _hidden_states(
    model: torch.nn.Module,
    input_ids: Int[Tensor, " n"],
    position_ids: Int[Tensor, " n"],
    segments: list[Segment],
) -> Float[Tensor, "n hidden"]:
    device = input_ids.device
    lens = [segment.num_tokens for segment in segments]
    cu_seq_lens = torch.tensor([0, *itertools.accumulate(lens)], dtype=torch.int32, device=device)
    masks = [
        prompt_tree_mask(s.prompt_len, list(s.completion_lens), device) if s.completion_lens else None for s in segments
    ]
    shared = {}
    if any(mask is not None for mask in masks):
        implementation = model.config._attn_implementation
        if implementation != VARLEN:
            raise ValueError(f"shared prompts need model.attn_implementation = '{VARLEN}', got '{implementation}'")
        shared = {"segment_masks": masks}
    return model.base_model(
        input_ids=input_ids[None],
        position_ids=position_ids[None],
        cu_seq_lens_q=cu_seq_lens,
        cu_seq_lens_k=cu_seq_lens,
        max_length_q=max(lens),
        max_length_k=max(lens),
        **shared,
    ).last_hidden_state[0]


def packed_logprobs(
    model: torch.nn.Module,
    input_ids: Int[Tensor, " tokens"],
    position_ids: Int[Tensor, " tokens"],
    temperatures: Float[Tensor, " tokens"],
    seq_lens: list[int],
    chunk_size: int = 1024,
    only: Bool[Tensor, " tokens"] | None = None,
    shared: SharedPrompts | None = None,
) -> tuple[Float[Tensor, " tokens"], Float[Tensor, " tokens"]]:
    """Logprob and entropy of the tokens of a packed row under `model`.

    0 at the first token of each sample (nothing of its own sample predicts it) and, when `only` is given, wherever
    `only` is False: the LM head then runs on the needed rows alone (the trainer passes the loss mask, which skips
    prompt and environment tokens, often most of a sample). With `shared` the decoder runs on its shorter input (each
    shared prompt once) and the results are placed back in the sample layout of `input_ids`.
    """
    if shared is None:
        hidden = _hidden_states(model, input_ids, position_ids, [Segment(n) for n in seq_lens])
    else:
        hidden = _hidden_states(model, shared.input_ids, shared.position_ids, shared.segments)
    wanted = position_ids != 0
    if only is not None:
        wanted = wanted & only
    targets = wanted.nonzero()[:, 0]
    # The hidden state of token t-1 predicts token t; with shared prompts the last prompt token's hidden state is
    # gathered once per completion, so its gradient sums over the group's completions.
    predictors = targets - 1 if shared is None else shared.token_index[targets - 1]
    head = model.get_output_embeddings()
    lp, ent = chunked_logprobs(
        hidden[predictors], head.weight, head.bias, input_ids[targets], temperatures[targets], chunk_size
    )
    logprobs = lp.new_zeros(input_ids.shape[0]).masked_scatter(wanted, lp)
    entropy = ent.new_zeros(input_ids.shape[0]).masked_scatter(wanted, ent)
    return logprobs, entropy

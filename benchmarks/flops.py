"""Model FLOPs of a trainer step and the machine's float32 matmul rate on that step's own GEMMs (the two halves of
`benchmarks/trainer.py --flops`).

Model FLOPs of a step, summed over its micro-batches (T: tokens the model runs on, a shared prompt once; R: LM-head
rows computed, the loss-mask tokens; L layers, hidden H, vocabulary V, A attended (query, key) pairs):

    6 * non_embedding_params * T  +  6 * H * V * R  +  12 * L * H * A

forward (2) and backward (4) per weight and token; the attention term counts QK^T and AV on the pairs the causal or
prompt-tree mask allows. The LM head recomputed in the backward (`trainer/logprobs.py`) is not model FLOPs.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from prime_rl.trainer.packing import MicroBatch, Segment


def segments(mb: MicroBatch) -> list[Segment]:
    return mb.shared.segments if mb.shared is not None else [Segment(n) for n in mb.seq_lens]


def attended_pairs(segment: Segment) -> int:
    """(query, key) pairs a segment's mask allows: the prompt causally, each completion the prompt and itself."""
    p = segment.prompt_len
    return p * (p + 1) // 2 + sum(c * p + c * (c + 1) // 2 for c in segment.completion_lens)


def head_rows(mb: MicroBatch) -> int:
    """Rows the LM head runs on: loss-mask tokens that have a predictor (`packed_logprobs(only=loss_mask)`)."""
    return int(((mb.position_ids != 0) & mb.loss_mask).sum())


def non_embedding_params(model: torch.nn.Module) -> int:
    embeddings = {id(model.get_input_embeddings().weight), id(model.get_output_embeddings().weight)}
    return sum(p.numel() for p in model.parameters() if id(p) not in embeddings)


def step_flops(model: torch.nn.Module, micro_batches: list[MicroBatch]) -> dict[str, int]:
    """Model FLOPs of one training step on `micro_batches`, by term (module docstring)."""
    config = model.config
    hidden, vocab, layers = config.hidden_size, config.vocab_size, config.num_hidden_layers
    tokens = sum(mb.num_model_tokens for mb in micro_batches)
    rows = sum(head_rows(mb) for mb in micro_batches)
    pairs = sum(attended_pairs(s) for mb in micro_batches for s in segments(mb))
    return {
        "dense": 6 * non_embedding_params(model) * tokens,
        "lm_head": 6 * hidden * vocab * rows,
        "attention": 12 * layers * hidden * pairs,
    }


def gemm_shapes(model: torch.nn.Module, micro_batches: list[MicroBatch]) -> list[tuple[torch.Tensor, int]]:
    """(weight [out, in], rows) of every weight GEMM a step runs: each decoder Linear (q/k/v/o, MLP gate/up/down) at
    each micro-batch's model tokens, the LM head at its computed rows."""
    linears = [m.weight for m in model.base_model.layers.modules() if isinstance(m, torch.nn.Linear)]
    head = model.get_output_embeddings().weight
    return [(w, mb.num_model_tokens) for mb in micro_batches for w in linears] + [
        (head, head_rows(mb)) for mb in micro_batches
    ]


@torch.no_grad()
def matmul_rate(shapes: list[tuple[torch.Tensor, int]], clock: Callable[[], float], seed: int = 0) -> tuple[int, float]:
    """(FLOPs, seconds) of the forward GEMM and the two backward GEMMs (input and weight gradient) of each shape,
    on the model's own weights (so the 30 layers' weights stream from memory as in a step) and random activations."""
    gen = torch.Generator().manual_seed(seed)
    flops, seconds = 0, 0.0
    for weight, rows in shapes:
        n, k = weight.shape
        x = torch.randn(rows, k, generator=gen, dtype=weight.dtype)
        dy = torch.randn(rows, n, generator=gen, dtype=weight.dtype)
        start = clock()
        x @ weight.T
        dy @ weight
        dy.T @ x
        seconds += clock() - start
        flops += 6 * rows * n * k
    return flops, seconds

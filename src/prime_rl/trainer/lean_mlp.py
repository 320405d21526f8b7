"""The gated MLP of Llama-style decoder layers, `down(silu(gate(x)) * up(x))`, with a backward that recomputes
`silu(gate) * up` instead of saving it: two [tokens, intermediate] tensors fewer per layer while a micro-batch's
activations are alive (the trainer's memory peak), for two elementwise passes more in the backward. Outputs and
gradients equal autograd's bit for bit (tests/unit/test_lean_mlp.py)."""

from __future__ import annotations

import types

import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor, nn
from transformers.models.llama.modeling_llama import LlamaMLP

SILU_MODULES = ("SiLU", "SiLUActivation")
"""Activation modules computing `F.silu` (torch's, and transformers' `ACT2FN["silu"]`)."""


class SwiGLUDown(torch.autograd.Function):
    """(gate [..., I], up [..., I], weight [H, I]) -> (silu(gate) * up) @ weight.T [..., H]; saves its inputs only."""

    @staticmethod
    def forward(ctx, gate: Tensor, up: Tensor, weight: Tensor) -> Tensor:
        ctx.save_for_backward(gate, up, weight)
        return F.linear(F.silu(gate) * up, weight)

    @staticmethod
    def backward(ctx, grad_out: Tensor) -> tuple[Tensor | None, Tensor | None, Tensor | None]:
        gate, up, weight = ctx.saved_tensors
        need_gate, need_up, need_weight = ctx.needs_input_grad
        silu = F.silu(gate)
        grad_2d = grad_out.reshape(-1, grad_out.shape[-1])
        # The same matmuls, in the same layout, as autograd's backward of `linear`, so the results match bit for bit.
        grad_hidden = grad_2d.mm(weight).view(gate.shape)
        grad_weight = (silu * up).reshape(-1, gate.shape[-1]).t().mm(grad_2d).t() if need_weight else None
        grad_up = grad_hidden * silu if need_up else None
        grad_gate = torch.ops.aten.silu_backward(grad_hidden * up, gate) if need_gate else None
        return grad_gate, grad_up, grad_weight


def lean_mlp_forward(mlp: nn.Module, x: Float[Tensor, "... hidden"]) -> Float[Tensor, "... hidden"]:
    return SwiGLUDown.apply(mlp.gate_proj(x), mlp.up_proj(x), mlp.down_proj.weight)


def _fits(module: nn.Module) -> bool:
    """A module whose forward is LlamaMLP's op for op (Qwen2, Mistral, ... copy it), with SiLU and a plain bias-free
    `down_proj` (not wrapped, e.g. by LoRA)."""
    forward = getattr(type(module).forward, "__code__", None)
    own = LlamaMLP.forward.__code__
    if forward is None or (forward.co_code, forward.co_names) != (own.co_code, own.co_names):
        return False
    down = module.down_proj
    silu = type(module.act_fn).__name__ in SILU_MODULES
    return type(down) is nn.Linear and down.bias is None and silu


def use_lean_mlp(model: nn.Module) -> int:
    """Gives every fitting MLP of `model` the lean forward; returns how many."""
    mlps = [module for module in model.modules() if _fits(module)]
    for mlp in mlps:
        mlp.forward = types.MethodType(lean_mlp_forward, mlp)
    return len(mlps)

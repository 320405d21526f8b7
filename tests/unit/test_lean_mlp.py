"""The lean MLP (`trainer/lean_mlp.py`): the same outputs and gradients as autograd's, bit for bit, on the tiny
Llama and on a SmolLM2-sized layer, and fewer tensors saved for the backward."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from transformers.models.llama.modeling_llama import LlamaMLP

from prime_rl.trainer.config import TrainerModelConfig
from prime_rl.trainer.lean_mlp import SwiGLUDown, lean_mlp_forward, use_lean_mlp
from prime_rl.trainer.model import setup_model


def reference_mlp(gate: nn.Linear, up: nn.Linear, down: nn.Linear, x: torch.Tensor) -> torch.Tensor:
    return down(torch.nn.functional.silu(gate(x)) * up(x))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_swiglu_down_equals_autograd_bit_for_bit(dtype):
    torch.manual_seed(0)
    gate, up = nn.Linear(576, 1536, bias=False), nn.Linear(576, 1536, bias=False)
    down = nn.Linear(1536, 576, bias=False)
    layers = nn.ModuleList([gate, up, down]).to(dtype)
    x, grad_out = torch.randn(1, 37, 576, dtype=dtype), torch.randn(1, 37, 576, dtype=dtype)
    results = []
    for lean in (False, True):
        xx = x.clone().requires_grad_()
        out = SwiGLUDown.apply(gate(xx), up(xx), down.weight) if lean else reference_mlp(gate, up, down, xx)
        out.backward(grad_out)
        results.append([out.detach(), xx.grad, *(p.grad for p in layers.parameters())])
        layers.zero_grad(set_to_none=True)
    for ours, theirs in zip(results[1], results[0], strict=True):
        assert torch.equal(ours, theirs)


def test_frozen_down_weight_gets_no_gradient():
    gate, up = torch.randn(5, 8, requires_grad=True), torch.randn(5, 8, requires_grad=True)
    weight = torch.randn(3, 8)
    SwiGLUDown.apply(gate, up, weight).sum().backward()
    assert weight.grad is None and gate.grad is not None and up.grad is not None


def test_setup_model_uses_it_when_asked_and_training_is_unchanged(tiny_model_dir):
    default = setup_model(TrainerModelConfig(name=str(tiny_model_dir)))
    assert not any("forward" in vars(layer.mlp) for layer in default.model.layers)
    model = setup_model(TrainerModelConfig(name=str(tiny_model_dir), lean_mlp=True))
    mlps = [layer.mlp for layer in model.model.layers]
    assert all(mlp.forward.__func__ is lean_mlp_forward for mlp in mlps)
    plain = copy.deepcopy(model)
    for mlp in [layer.mlp for layer in plain.model.layers]:
        del mlp.forward  # back to the class's own forward
    ids = torch.randint(0, 1000, (1, 23))
    for m in (model, plain):
        m(input_ids=ids).logits.float().pow(2).mean().backward()
    for (name, ours), theirs in zip(model.named_parameters(), plain.parameters(), strict=True):
        assert torch.equal(ours.grad, theirs.grad), name


def test_saves_two_intermediate_tensors_fewer_per_mlp(tiny_model_dir):
    model = setup_model(TrainerModelConfig(name=str(tiny_model_dir), lean_mlp=True))
    mlp, x = model.model.layers[0].mlp, torch.randn(1, 11, 64)

    def saved_elements(forward) -> int:
        sizes = []
        with torch.autograd.graph.saved_tensors_hooks(lambda t: sizes.append(t.numel()) or t, lambda t: t):
            forward(x)
        return sum(sizes) - mlp.down_proj.weight.numel() - mlp.gate_proj.weight.numel() - mlp.up_proj.weight.numel()

    lean = saved_elements(mlp)
    plain = saved_elements(lambda x: reference_mlp(mlp.gate_proj, mlp.up_proj, mlp.down_proj, x))
    assert plain - lean == 2 * 11 * 128


def test_only_llama_mlps_with_plain_silu_are_switched():
    class MLP(nn.Module):
        def __init__(self, act: nn.Module, bias: bool = False):
            super().__init__()
            self.gate_proj, self.up_proj = nn.Linear(4, 8, bias=False), nn.Linear(4, 8, bias=False)
            self.down_proj, self.act_fn = nn.Linear(8, 4, bias=bias), act

        forward = LlamaMLP.forward

    class Other(MLP):
        def forward(self, x):
            return self.down_proj(self.act_fn(self.gate_proj(x)) + self.up_proj(x))

    model = nn.ModuleList([MLP(nn.SiLU()), MLP(nn.GELU()), MLP(nn.SiLU(), bias=True), Other(nn.SiLU())])
    assert use_lean_mlp(model) == 1
    assert ["forward" in vars(m) for m in model] == [True, False, False, False]

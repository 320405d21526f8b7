"""The LoRA adapter on disk, in peft's format (`adapter_config.json` + `adapter_model.safetensors`), and its merge
into base weights: what the trainer broadcasts and exports and what the inference engine applies.

Tensor names are peft's saved names, `base_model.model.<module>.lora_A.weight` (r x in) and `...lora_B.weight`
(out x r); the merged weight of `<module>.weight` is `base + scale * B @ A` with `scale = alpha / r`
(`alpha / sqrt(r)` with rslora). No peft import here: the inference server reads the files without it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import Tensor

ADAPTER_FILE = "adapter_model.safetensors"
ADAPTER_CONFIG = "adapter_config.json"
PEFT_PREFIX = "base_model.model."
"""peft's prefix of saved adapter names (the `PeftModel` wrapper's path to the base model)."""
LORA_A, LORA_B = ".lora_A.weight", ".lora_B.weight"


def is_adapter_dir(path: Path) -> bool:
    return (path / ADAPTER_CONFIG).is_file()


def adapter_scale(config: dict) -> float:
    """`lora_alpha / r` (rslora: `/ sqrt(r)`) of a peft adapter config; ValueError for the options the plain merge
    does not apply (per-module ranks, DoRA, transposed weights)."""
    for key in ("rank_pattern", "alpha_pattern", "use_dora", "fan_in_fan_out"):
        if config.get(key):
            raise ValueError(f"`{ADAPTER_CONFIG}`: `{key}` is not supported (plain LoRA, one rank and alpha)")
    r, alpha = config["r"], config["lora_alpha"]
    return alpha / math.sqrt(r) if config.get("use_rslora") else alpha / r


def read_adapter_config(path: Path) -> dict:
    return json.loads((path / ADAPTER_CONFIG).read_text())


def adapter_pairs(adapter: dict[str, Tensor]) -> dict[str, tuple[Tensor, Tensor]]:
    """`<module>.weight` -> (A, B) for every adapted module; ValueError naming a tensor without its partner or with
    another name."""
    pairs: dict[str, tuple[Tensor, Tensor]] = {}
    for name, a in adapter.items():
        if name.endswith(LORA_B):
            if name[: -len(LORA_B)] + LORA_A not in adapter:
                raise ValueError(f"adapter tensor `{name}` has no `{LORA_A[1:]}` partner")
            continue
        if not (name.startswith(PEFT_PREFIX) and name.endswith(LORA_A)):
            raise ValueError(f"adapter tensor `{name}` is not a LoRA `{PEFT_PREFIX}...{LORA_A}` or `{LORA_B}` tensor")
        module = name[len(PEFT_PREFIX) : -len(LORA_A)]
        b = adapter.get(f"{PEFT_PREFIX}{module}{LORA_B}")
        if b is None:
            raise ValueError(f"adapter tensor `{name}` has no `{LORA_B[1:]}` partner")
        pairs[f"{module}.weight"] = (a, b)
    return pairs


def check_adapter_shapes(pairs: dict[str, tuple[Tensor, Tensor]], shapes: Mapping[str, tuple[int, ...]]) -> None:
    """ValueError naming an adapted module (`adapter_pairs`) that `shapes` (weight name -> shape) lacks, or whose A
    and B do not fit its weight."""
    for name, (a, b) in pairs.items():
        if name not in shapes:
            raise ValueError(f"the adapter adapts `{name}`, which the model does not have")
        shape = tuple(shapes[name])
        if a.ndim != 2 or b.ndim != 2 or (b.shape[0], a.shape[1]) != shape or a.shape[0] != b.shape[1]:
            raise ValueError(
                f"adapter of `{name}`: A {tuple(a.shape)} and B {tuple(b.shape)} do not fit the weight "
                f"{shape} (A: r x in, B: out x r)"
            )


@torch.no_grad()
def merge_adapter(base: dict[str, Tensor], adapter: dict[str, Tensor], scale: float) -> dict[str, Tensor]:
    """The merged weight of every adapted module: `base + scale * B @ A`, computed in float32 at least, in the base
    weight's dtype and device; ValueError naming a module the base lacks or a shape that does not fit it."""
    pairs = adapter_pairs(adapter)
    check_adapter_shapes(pairs, {name: tuple(t.shape) for name, t in base.items()})
    merged = {}
    for name, (a, b) in pairs.items():
        weight = base[name]
        dtype = torch.promote_types(weight.dtype, torch.float32)
        delta = b.to(weight.device, dtype) @ a.to(weight.device, dtype)
        merged[name] = (weight.to(dtype) + scale * delta).to(weight.dtype)
    return merged

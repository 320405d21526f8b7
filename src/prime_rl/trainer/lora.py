"""LoRA on the trainer's model with peft: adapters injected in place (the model stays a transformers model, so the
trainer's forward, FSDP wrapping and checkpoints are unchanged), everything else frozen.

After injection an adapted linear's base weight is `<module>.base_layer.weight` and its adapter
`<module>.lora_A.default.weight`; `adapter_state` renames the adapter to peft's saved names (`weights/adapter.py`).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor
from torch.nn import Linear

from prime_rl.trainer.config import LoRAConfig
from prime_rl.utils.config import ConfigError
from prime_rl.weights.adapter import PEFT_PREFIX, adapter_scale, merge_adapter

ADAPTER_NAME = "default"


def peft_config(config: LoRAConfig, base_model: str | None = None):
    """peft's `LoraConfig` of `[model.lora]` (`base_model`: recorded as `base_model_name_or_path`)."""
    from peft import LoraConfig

    return LoraConfig(
        r=config.rank,
        lora_alpha=config.alpha,
        lora_dropout=config.dropout,
        target_modules=config.target_modules,
        task_type="CAUSAL_LM",
        base_model_name_or_path=base_model,
    )


def apply_lora(model: torch.nn.Module, config: LoRAConfig, base_model: str | None = None) -> torch.nn.Module:
    """Injects the adapters into `model` in place and freezes every other parameter; ConfigError naming
    `model.lora.target_modules` when peft finds none of them (or one it cannot adapt)."""
    from peft import inject_adapter_in_model

    check_targets(model, config.target_modules)
    try:
        inject_adapter_in_model(peft_config(config, base_model), model, adapter_name=ADAPTER_NAME)
    except ValueError as e:
        raise ConfigError(f"`model.lora.target_modules` = {config.target_modules!r}: {e}") from None
    for name, param in model.named_parameters():
        param.requires_grad_(is_adapter_param(name))
    return model


def check_targets(model: torch.nn.Module, targets: list[str] | str) -> None:
    """ConfigError naming a listed target that matches no module of `model` (peft only refuses a list that matches
    none) or no linear layer (an embedding's adapter would be neither trained nor broadcast); a meta-device model is
    enough (`rl` checks before starting)."""
    if isinstance(targets, str):
        return
    linear = sorted({name.rpartition(".")[2] for name, m in model.named_modules() if isinstance(m, Linear)})
    for target in targets:
        matched = [m for name, m in model.named_modules() if name == target or name.endswith("." + target)]
        if not matched:
            raise ConfigError(
                f"`model.lora.target_modules`: {type(model).__name__} has no module `{target}` (its linear layers: "
                f"{', '.join(linear)})"
            )
        if not any(isinstance(m, Linear) for m in matched):
            kind = type(matched[0]).__name__
            raise ConfigError(
                f"`model.lora.target_modules`: `{target}` of {type(model).__name__} is an `{kind}` module, not a "
                f"linear layer (LoRA adapts linear layers: {', '.join(linear)})"
            )


def is_adapter_param(name: str) -> bool:
    return ".lora_A." in name or ".lora_B." in name


def has_lora(model: torch.nn.Module) -> bool:
    return hasattr(model, "peft_config")


def adapter_state(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """The adapter tensors of a (full) state dict of the injected model, under peft's saved names."""
    suffix = f".{ADAPTER_NAME}."
    return {PEFT_PREFIX + name.replace(suffix, "."): tensor for name, tensor in state.items() if is_adapter_param(name)}


def merged_state(model: torch.nn.Module, state: dict[str, Tensor]) -> dict[str, Tensor]:
    """The plain model's state dict (base names, adapters merged in) from a full state dict of the injected model."""
    base = {name.replace(".base_layer.", "."): t for name, t in state.items() if not is_adapter_param(name)}
    scale = adapter_scale(model.peft_config[ADAPTER_NAME].to_dict())
    return base | merge_adapter(base, adapter_state(state), scale)


def served_state(model: torch.nn.Module) -> dict[str, Tensor]:
    """What the inference engine serves for this (unsharded) model: its weights, adapters merged in."""
    from prime_rl.weights.state import unique_state_dict

    state = unique_state_dict(model)
    return merged_state(model, state) if has_lora(model) else state


def save_adapter_config(model: torch.nn.Module, directory: Path) -> None:
    """Writes peft's `adapter_config.json` of the model's adapter into `directory`."""
    model.peft_config[ADAPTER_NAME].save_pretrained(str(directory))

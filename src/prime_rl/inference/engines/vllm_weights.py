"""Checks a trainer's safetensors directory against the served model's HF parameter names and shapes, reading only
the file headers, before vLLM's workers load anything (so a wrong model's weights are never half-applied)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from prime_rl.inference.engines.base import EngineError


@dataclass
class ParameterTable:
    """HF names of the served model: canonical name -> shape, and every name (tied ones too) -> its canonical name."""

    shapes: dict[str, tuple[int, ...]]
    aliases: dict[str, str]


def parameter_table(model_path: str) -> ParameterTable:
    """Builds the model's skeleton on the meta device (no memory, no weights read) and lists its parameters."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(model_path)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    canonical: dict[int, str] = {}
    table = ParameterTable({}, {})
    for name, param in model.named_parameters(remove_duplicate=False):
        first = canonical.setdefault(id(param), name)
        table.aliases[name] = first
        if first == name:
            table.shapes[name] = tuple(param.shape)
    return table


def check_weight_dir(weight_dir: Path, table: ParameterTable) -> None:
    """Raises EngineError (404 no files, 400 unknown name / wrong shape / missing parameter) naming the tensor."""
    from safetensors import safe_open

    if not weight_dir.is_dir():
        raise EngineError(f"weight_dir `{weight_dir}` does not exist or is not a directory", "weight_dir", 404)
    files = sorted(weight_dir.glob("*.safetensors"))
    if not files:
        raise EngineError(f"weight_dir `{weight_dir}` holds no *.safetensors file", "weight_dir", 404)
    found: set[str] = set()
    for file in files:
        try:
            with safe_open(file, framework="pt") as f:
                shapes = {name: tuple(f.get_slice(name).get_shape()) for name in f.keys()}  # noqa: SIM118
        except Exception as e:
            raise EngineError(f"cannot read `{file}`: {e}", "weight_dir") from e
        for name, shape in shapes.items():
            if name not in table.aliases:
                raise EngineError(
                    f"`{file.name}` has tensor `{name}`, which the served model does not have", "weight_dir"
                )
            canonical = table.aliases[name]
            if shape != table.shapes[canonical]:
                raise EngineError(
                    f"`{file.name}`: tensor `{name}` has shape {shape}, "
                    f"the served model expects {table.shapes[canonical]}",
                    "weight_dir",
                )
            found.add(canonical)
    missing = sorted(set(table.shapes) - found)
    if missing:
        shown = ", ".join(f"`{m}`" for m in missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise EngineError(f"weight_dir `{weight_dir}` is missing {shown}", "weight_dir")

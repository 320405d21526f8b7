"""Checks a trainer's safetensors directory against the served model's HF parameter names and shapes, reading only
the file headers, before vLLM's workers load anything (so a wrong model's weights are never half-applied)."""

from __future__ import annotations

from pathlib import Path

from prime_rl.inference.engines.weights import CheckedWeights, ParameterTable, check_tensor_files


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
    """Raises EngineError (404 no files, 400 unknown name / wrong shape / missing parameter) naming the tensor; reads
    the file headers only (vLLM's workers read the tensors)."""
    checked = CheckedWeights([])
    try:
        check_tensor_files(weight_dir, table, checked)
    finally:
        checked.close()

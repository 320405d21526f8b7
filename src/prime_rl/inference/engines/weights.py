"""Reading a trainer's safetensors directory and checking it against the served model before anything is copied."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor

from prime_rl.inference.engines.base import EngineError
from prime_rl.inference.weight_paths import weight_files
from prime_rl.weights.state import unique_state_dict
from prime_rl.weights.tensor_file import TensorFile


def tied_aliases(model: torch.nn.Module) -> dict[str, str]:
    """Maps every state-dict name to the canonical name of the tensor it shares storage with."""
    canonical: dict[int, str] = {}
    aliases: dict[str, str] = {}
    for name, tensor in model.state_dict().items():
        aliases[name] = canonical.setdefault(tensor.data_ptr(), name)
    return aliases


@dataclass
class ParameterTable:
    """The served model's tensor names: canonical name -> shape, and every name (tied ones too) -> its canonical
    name. Both engines check a weight directory against one (`check_tensor_files`)."""

    shapes: dict[str, tuple[int, ...]]
    aliases: dict[str, str]


def model_table(model: torch.nn.Module) -> ParameterTable:
    """The table of a loaded model's state dict (the HF engine's)."""
    shapes = {name: tuple(tensor.shape) for name, tensor in unique_state_dict(model).items()}
    return ParameterTable(shapes, tied_aliases(model))


@dataclass
class CheckedWeights:
    """A weight directory checked against the served model, its files kept open: which tensor of which file becomes
    which canonical parameter. `copy_into_model` reads them again one at a time, so an update holds one tensor
    beyond the model; the open files stay readable if the trainer deletes the directory meanwhile."""

    files: list[TensorFile]
    sources: dict[str, tuple[TensorFile, str]] = field(default_factory=dict)
    """Canonical parameter name -> (file, tensor name in that file)."""

    def copy_into_model(self, model: torch.nn.Module) -> None:
        """Reads each tensor straight into its parameter when dtype and layout allow (no copy in between), else
        reads it and copies it in (casting the dtype)."""
        state = unique_state_dict(model)
        with torch.no_grad():
            for canonical, (file, name) in self.sources.items():
                target = state[canonical]
                if target.dtype == file.dtype(name) and target.is_contiguous() and target.device.type == "cpu":
                    file.read(name, out=target)
                else:
                    target.copy_(file.read(name))

    def close(self) -> None:
        for file in self.files:
            file.close()


def check_weight_dir(weight_dir: Path, model: torch.nn.Module) -> CheckedWeights:
    """Checks every `*.safetensors` tensor of `weight_dir`, one at a time, before anything is copied; raises
    EngineError.

    Every parameter of the model must be present (a tied duplicate such as `lm_head.weight` may be absent) with its
    exact shape, a floating-point dtype (cast to the served dtype) and finite values; unknown names are refused, so
    a wrong model's or a diverged trainer's weights are never applied, not even in part.
    """
    checked = CheckedWeights([])
    try:
        check_tensor_files(weight_dir, model_table(model), checked, _check_tensor)
    except BaseException:
        checked.close()
        raise
    return checked


def check_tensor_files(
    weight_dir: Path,
    table: ParameterTable,
    checked: CheckedWeights,
    check_tensor: Callable[[TensorFile, str], None] | None = None,
) -> None:
    """Opens the `*.safetensors` files of `weight_dir` into `checked` and matches each tensor's name and shape (from
    the file header) against `table`, then hands it to `check_tensor`; raises EngineError naming the file and the
    tensor, or the parameters no file holds."""
    for path in weight_files(weight_dir):
        try:
            file = TensorFile(path)
        except (OSError, ValueError) as e:
            raise EngineError(f"cannot read `{path}`: {e}", "weight_dir") from e
        checked.files.append(file)
        for name, entry in file.entries.items():
            if name not in table.aliases:
                raise EngineError(
                    f"`{path.name}` has tensor `{name}`, which the served model does not have", "weight_dir"
                )
            canonical = table.aliases[name]
            if entry.shape != table.shapes[canonical]:
                raise EngineError(
                    f"`{path.name}`: tensor `{name}` has shape {entry.shape}, "
                    f"the served model expects {table.shapes[canonical]}",
                    "weight_dir",
                )
            if check_tensor is not None:
                check_tensor(file, name)
            checked.sources[canonical] = (file, name)
    missing = sorted(set(table.shapes) - set(checked.sources))
    if missing:
        shown = ", ".join(f"`{m}`" for m in missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise EngineError(f"weight_dir `{weight_dir}` is missing {shown}", "weight_dir")


def _check_tensor(file: TensorFile, name: str) -> None:
    """Floating point and finite, read in chunks (`torch.isfinite` of a whole tensor allocates ~3x its size in
    temporaries: +0.29 GiB on SmolLM2's embedding, the server's peak before); raises EngineError."""
    try:
        dtype = file.dtype(name)
        if not dtype.is_floating_point:
            raise EngineError(
                f"`{file.path.name}`: tensor `{name}` has dtype {dtype}; weights must be floating point", "weight_dir"
            )
        if not all(bool(torch.isfinite(chunk).all()) for chunk in file.chunks(name)):
            raise EngineError(f"`{file.path.name}`: tensor `{name}` holds non-finite values (NaN or inf)", "weight_dir")
    except (OSError, ValueError) as e:
        raise EngineError(f"cannot read `{file.path}`: {e}", "weight_dir") from e


@torch.no_grad()
def copy_into(model: torch.nn.Module, tensors: dict[str, Tensor]) -> None:
    """Copies canonical-name tensors into the model in place (dtype and device converted)."""
    state = unique_state_dict(model)
    for name, tensor in tensors.items():
        state[name].copy_(tensor)


def read_adapter_dir(weight_dir: Path) -> tuple[dict[str, Tensor], float]:
    """A LoRA adapter directory in peft's format (`weights/adapter.py`): its tensors, checked for dtype and finite
    values, and its scale; raises EngineError. The shapes are checked against the model when it is merged."""
    from prime_rl.weights.adapter import ADAPTER_CONFIG, adapter_scale, read_adapter_config

    try:
        scale = adapter_scale(read_adapter_config(weight_dir))
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise EngineError(f"`{weight_dir / ADAPTER_CONFIG}` is not a usable LoRA config: {e!r}", "weight_dir") from e
    adapter: dict[str, Tensor] = {}
    for path in weight_files(weight_dir):
        try:
            file = TensorFile(path)
        except (OSError, ValueError) as e:
            raise EngineError(f"cannot read `{path}`: {e}", "weight_dir") from e
        with file:
            for name in file.entries:
                _check_tensor(file, name)
                adapter[name] = file.read(name)
    return adapter, scale

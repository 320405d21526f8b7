"""The served model's starting weights, for `/reload_weights` and LoRA merges, without a copy of the whole model:
when the model directory's safetensors hold exactly the loaded values (checked tensor by tensor at load), a reload
reads them back from there; only the weights a LoRA adapter adapts are kept as copies (merged at every update).
Otherwise (no safetensors, renamed or converted tensors) each weight is copied before its first change."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

import torch
from torch import Tensor

from prime_rl.inference.engines.weights import tied_aliases
from prime_rl.utils.logger import get_logger
from prime_rl.weights.state import unique_state_dict
from prime_rl.weights.tensor_file import TensorFile


class StartWeights:
    """Tracks which weights left their starting value and gives those values back (see the module docstring)."""

    def __init__(self, model: torch.nn.Module, model_dir: Path | None):
        self.model = model
        self.sources = matching_sources(model, model_dir) if model_dir is not None else None
        """Canonical name -> (file, tensor name) holding its starting value; None when the directory cannot."""
        self.saved: dict[str, Tensor] = {}
        """Copies of starting values: the LoRA-adapted weights, and every changed one when `sources` is None."""
        self.changed: set[str] = set()
        """Canonical names whose served value may differ from the starting one."""

    def before_change(self, names: Iterable[str]) -> None:
        """Call before writing `names` into the model: without `sources`, copies what still holds its start value."""
        names = set(names) - self.changed
        if self.sources is None:
            state = unique_state_dict(self.model)
            self.saved |= {n: state[n].clone() for n in sorted(names) if n not in self.saved}
        self.changed |= names

    def values(self, names: Iterable[str]) -> dict[str, Tensor]:
        """The starting values of `names`, kept as copies from now on."""
        names = list(names)
        state = unique_state_dict(self.model)
        wanted = [n for n in names if n not in self.saved]
        self.saved |= {n: state[n].clone() for n in wanted if n not in self.changed}
        read = self._read([n for n in wanted if n in self.changed])
        self.saved |= {n: t.to(state[n].dtype) for n, t in read.items()}
        return {n: self.saved[n] for n in names}

    @torch.no_grad()
    def restore(self, names: Iterable[str] | None = None) -> list[str]:
        """Writes the starting values of `names` (default: every changed weight) back into the model; returns the
        names it wrote."""
        todo = sorted(self.changed if names is None else self.changed & set(names))
        state = unique_state_dict(self.model)
        for name in todo:
            if name in self.saved:
                state[name].copy_(self.saved[name])
        self._read([n for n in todo if n not in self.saved], lambda name, t: state[name].copy_(t))
        self.changed -= set(todo)
        return todo

    def _read(self, names: list[str], sink: Callable[[str, Tensor], object] | None = None) -> dict[str, Tensor]:
        """Reads `names` from the model directory one tensor at a time; hands each to `sink` or returns them all."""
        if not names:
            return {}
        assert self.sources is not None, "changed weights without a saved copy need the model directory"
        out: dict[str, Tensor] = {}
        by_file: dict[Path, list[str]] = {}
        for name in names:
            by_file.setdefault(self.sources[name][0], []).append(name)
        for path, group in by_file.items():
            with TensorFile(path) as file:
                for name in group:
                    tensor = file.read(self.sources[name][1])
                    if sink is None:
                        out[name] = tensor
                    else:
                        sink(name, tensor)
        return out


def matching_sources(model: torch.nn.Module, model_dir: Path) -> dict[str, tuple[Path, str]] | None:
    """Where each weight's loaded value lies in `model_dir`'s safetensors files, if every weight is there with
    exactly its loaded value (compared one tensor at a time); else None."""
    files = sorted(model_dir.glob("*.safetensors"))
    if not files:
        return None
    aliases = tied_aliases(model)
    state = unique_state_dict(model)
    sources: dict[str, tuple[Path, str]] = {}
    try:
        for path in files:
            with TensorFile(path) as file:
                for name in file.entries:
                    canonical = aliases.get(name)
                    if canonical is None or canonical in sources:
                        continue
                    if not _same(state[canonical], file.read(name)):
                        return _unusable(model_dir, f"`{name}` differs from the loaded weight")
                    sources[canonical] = (path, name)
    except (OSError, ValueError) as e:
        return _unusable(model_dir, str(e))
    missing = set(state) - set(sources)
    if missing:
        return _unusable(model_dir, f"{len(missing)} weights are not in its safetensors, e.g. `{min(missing)}`")
    return sources


def _same(loaded: Tensor, stored: Tensor) -> bool:
    return loaded.shape == stored.shape and torch.equal(loaded, stored.to(loaded.device, loaded.dtype))


def _unusable(model_dir: Path, why: str) -> None:
    get_logger("inference.engine").info(
        f"starting weights are copied before each first change ({model_dir} cannot give them back: {why})"
    )
    return None

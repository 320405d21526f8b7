"""A model's state dict with each tied tensor once: what is broadcast, exported and loaded into."""

from __future__ import annotations

import torch
from torch import Tensor


def unique_state_dict(model: torch.nn.Module) -> dict[str, Tensor]:
    """The state dict without tied duplicates (the first name of a shared tensor wins), detached: the tensors share
    the model's storage, so copying into them updates the model."""
    seen: set[tuple[int, int]] = set()
    out: dict[str, Tensor] = {}
    for name, tensor in model.state_dict().items():
        key = (tensor.untyped_storage().data_ptr(), tensor.storage_offset())
        if key in seen:
            continue
        seen.add(key)
        out[name] = tensor.detach()
    return out

"""The one place that knows about accelerators: device choice, default dtype, peak memory (threads: `threads.py`)."""

from __future__ import annotations

import resource

import torch


def get_device(name: str = "auto") -> torch.device:
    """`auto` picks CUDA when present, else CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def default_dtype(device: torch.device) -> torch.dtype:
    """bfloat16 on CUDA; float32 on CPU, where most CPUs have no native bfloat16 and it is slower."""
    return torch.bfloat16 if device.type == "cuda" else torch.float32


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    if name == "auto":
        return default_dtype(device)
    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16, "float64": torch.float64}[
        name
    ]


def peak_memory_gib(device: torch.device) -> float:
    """Peak accelerator memory on CUDA, peak resident set size of this process on CPU."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)

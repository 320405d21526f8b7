"""Which files a weight update may read: the `*.safetensors` regular files of a directory under the output root.

Every file is resolved, so a symlink inside the output directory pointing outside it is refused, and so is anything
that is not a regular file (a FIFO named `model.safetensors` would block the reader forever).
"""

from __future__ import annotations

import stat
from pathlib import Path

from prime_rl.inference.engines.base import EngineError

MAX_PATH_CHARS = 4096
"""Longest `weight_dir` accepted (Linux PATH_MAX)."""


def resolve_weight_dir(raw: str, root: Path) -> Path:
    """Resolves the requested `weight_dir`; 400 for an unusable path, 403 outside `root` (already resolved)."""
    if len(raw) > MAX_PATH_CHARS:
        raise EngineError(f"`weight_dir` is {len(raw)} characters long (at most {MAX_PATH_CHARS})", "weight_dir")
    if "\x00" in raw:
        raise EngineError("`weight_dir` contains a NUL byte", "weight_dir")
    try:
        weight_dir = Path(raw).resolve()
    except (OSError, RuntimeError) as e:
        raise EngineError(f"weight_dir `{raw}` cannot be resolved: {e}", "weight_dir") from None
    if not weight_dir.is_relative_to(root):
        raise EngineError(f"weight_dir `{raw}` is outside the output directory `{root}`", "weight_dir", 403)
    return weight_dir


def weight_files(weight_dir: Path, root: Path | None = None) -> list[Path]:
    """The resolved `*.safetensors` files of `weight_dir`: 404 if none, 403 if one leads outside `root`, 400 if one
    is not a regular file or cannot be inspected."""
    try:
        if not weight_dir.is_dir():
            raise EngineError(f"weight_dir `{weight_dir}` does not exist or is not a directory", "weight_dir", 404)
        files = sorted(weight_dir.glob("*.safetensors"))
        if not files:
            raise EngineError(f"weight_dir `{weight_dir}` holds no *.safetensors file", "weight_dir", 404)
        return [_checked(file, root) for file in files]
    except (OSError, RuntimeError) as e:
        raise EngineError(f"weight_dir `{weight_dir}` cannot be read: {e}", "weight_dir") from None


def _checked(file: Path, root: Path | None) -> Path:
    real = file.resolve(strict=True)
    if root is not None and not real.is_relative_to(root):
        raise EngineError(f"`{file}` leads to `{real}`, outside the output directory `{root}`", "weight_dir", 403)
    if not stat.S_ISREG(real.stat().st_mode):
        raise EngineError(f"`{file}` is not a regular file", "weight_dir")
    return real

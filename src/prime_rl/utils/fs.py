"""Atomic writes and STABLE-marker directories: a reader never sees a half-written file or directory."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

STABLE = "STABLE"


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Writes to a temporary sibling, fsyncs, then renames over `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")
    with tmp.open("wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


@contextmanager
def stable_dir(path: Path) -> Iterator[Path]:
    """Yields a temporary directory to fill; on success it is renamed to `path` and gets a `STABLE` marker last."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")
    tmp.mkdir()
    try:
        yield tmp
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
        (path / STABLE).touch()
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def is_stable(path: Path) -> bool:
    return (path / STABLE).is_file()


def step_dirs(root: Path, stable_only: bool = True) -> dict[int, Path]:
    """`{N: root/step_N}` for every (STABLE) step directory under `root`."""
    out = {}
    if root.is_dir():
        for child in root.iterdir():
            if child.name.startswith("step_") and child.name[5:].isdigit() and (not stable_only or is_stable(child)):
                out[int(child.name[5:])] = child
    return dict(sorted(out.items()))


def latest_step(root: Path) -> int | None:
    steps = step_dirs(root)
    return max(steps) if steps else None


def keep_last(root: Path, n: int, protect: set[int] = frozenset()) -> None:
    """Deletes all but the newest `n` step directories (and any not in `protect`)."""
    steps = sorted(step_dirs(root, stable_only=False))
    for step in steps[: max(len(steps) - n, 0)]:
        if step not in protect:
            shutil.rmtree(root / f"step_{step}", ignore_errors=True)

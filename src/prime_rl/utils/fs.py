"""Atomic writes and STABLE-marker directories: a reader never sees a half-written file or directory, and a full disk
is said in words ("no space left on device" and the path), whatever the serialiser raised."""

from __future__ import annotations

import errno
import os
import re
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

STABLE = "STABLE"
LOW_SPACE = 1 << 20
"""Bytes free below which a failed write is blamed on the disk (torch.save may only say `enforce fail`)."""
_TEMP_NAME = re.compile(r"^\..+\.tmp-[0-9a-f]{8}$")


class DiskFullError(OSError):
    """A write failed on a full disk; `filename` is the file or directory being written."""

    def __init__(self, path: Path, free: int | None, cause: BaseException):
        where = f" ({free} bytes free)" if free is not None else ""
        super().__init__(errno.ENOSPC, f"no space left on device{where}: {type(cause).__name__}: {cause}", str(path))


def temp_path(path: Path) -> Path:
    """The sibling a writer fills before renaming it to `path`: `.NAME.tmp-<8 hex digits>` (see `is_temp`)."""
    return path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")


def is_temp(path: Path) -> bool:
    """Whether `path` is a writer's temporary sibling (left behind only when the writer was killed)."""
    return bool(_TEMP_NAME.match(path.name))


def free_bytes(path: Path) -> int | None:
    """Bytes available on the file system holding `path` (its nearest existing ancestor); None if unknown."""
    for candidate in (path, *path.parents):
        if candidate.exists():
            try:
                return shutil.disk_usage(candidate).free
            except OSError:
                return None
    return None


def _is_enospc(error: BaseException | None) -> bool:
    while error is not None:
        if getattr(error, "errno", None) == errno.ENOSPC or "No space left on device" in str(error):
            return True
        error = error.__cause__ or error.__context__
    return False


@contextmanager
def disk_full_as_oserror(path: Path) -> Iterator[None]:
    """Re-raises a failure of the write to `path` as DiskFullError when the disk is full."""
    try:
        yield
    except Exception as e:
        free = free_bytes(path)
        if _is_enospc(e) or (free is not None and free < LOW_SPACE):
            raise DiskFullError(path, free, e) from e
        raise


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Writes to a temporary sibling, fsyncs, then renames over `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(path)
    try:
        with disk_full_as_oserror(path), tmp.open("wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


@contextmanager
def stable_dir(path: Path) -> Iterator[Path]:
    """Yields a temporary directory to fill; on success it is renamed to `path` and gets a `STABLE` marker last."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(path)
    try:
        with disk_full_as_oserror(path):
            tmp.mkdir()
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

"""Returning freed heap memory to the OS: glibc keeps freed blocks below its (self-raising, up to 32 MiB) mmap
threshold in its arenas, so a process that once held a large KV cache or a weight update keeps its peak RSS."""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import sys


@functools.cache
def _malloc_trim():
    if not sys.platform.startswith("linux"):
        return None
    libc = ctypes.CDLL(ctypes.util.find_library("c"))
    return getattr(libc, "malloc_trim", None)  # glibc only (not musl)


def release_free_memory() -> bool:
    """`malloc_trim(0)` on glibc: gives the free pages of every arena back to the OS; returns whether any were."""
    trim = _malloc_trim()
    return bool(trim()) if trim is not None else False

"""CPU threads of every process (`rl` and its children, `inference`, `eval`, `sft`, the benchmarks), chosen from the
cores the process may actually run on (affinity mask, cgroup CPU quota), never `os.cpu_count()`. The rule and the
measurements behind it: docs/scaling.md, "Threads"."""

from __future__ import annotations

import contextlib
import math
import os
from pathlib import Path

from prime_rl.utils.logger import get_logger

CGROUP_ROOT = Path("/sys/fs/cgroup")


def cgroup_cpu_limit(root: Path = CGROUP_ROOT) -> float | None:
    """CPUs allowed by a cgroup CPU quota (v2 `cpu.max`, v1 `cpu.cfs_quota_us / cpu.cfs_period_us`); None: no quota."""
    v2 = root / "cpu.max"
    if v2.is_file():
        quota, _, period = v2.read_text().strip().partition(" ")
        return None if quota == "max" else int(quota) / int(period or 100000)
    for folder in ("cpu", "cpu,cpuacct"):
        quota_file, period_file = root / folder / "cpu.cfs_quota_us", root / folder / "cpu.cfs_period_us"
        if quota_file.is_file() and period_file.is_file():
            quota = int(quota_file.read_text())
            return None if quota <= 0 else quota / int(period_file.read_text())
    return None


def affinity() -> set[int]:
    """The cores this process may run on (all of them where the OS has no affinity call)."""
    if hasattr(os, "sched_getaffinity"):
        return set(os.sched_getaffinity(0))
    return set(range(os.cpu_count() or 1))


def available_cores(mask: set[int] | None = None, cgroup_root: Path = CGROUP_ROOT) -> int:
    """Cores of the affinity mask, capped by the cgroup quota rounded down (a 1.5-CPU quota gives 1: a second thread
    would be throttled half the time, stalling the first at every barrier); at least 1."""
    cores = len(affinity() if mask is None else mask)
    limit = cgroup_cpu_limit(cgroup_root)
    if limit is not None:
        cores = min(cores, math.floor(limit))
    return max(1, cores)


def default_threads(role: str, cores: int | None = None) -> int:
    """Threads of a process left unconfigured: the inference engine leaves one core to its HTTP front end (as vLLM's
    CPU build does), the orchestrator needs one, a trainer (or `sft`, a benchmark) takes every core."""
    cores = cores or available_cores()
    if role == "inference":
        return max(1, cores - 1)
    if role == "orchestrator":
        return 1
    return cores


def split_threads(cores: int | None = None) -> tuple[int, int]:
    """`(inference, trainer)` threads of `rl` when not configured: half the cores each, at least one each."""
    cores = cores or available_cores()
    inference = max(1, cores // 2)
    return inference, max(1, cores - inference)


def check_threads(threads: int, key: str, cores: int | None = None) -> int:
    """An explicit thread count wins, but one above the available cores is warned about (threads then wait for each
    other at every parallel region while another process holds their core)."""
    cores = cores or available_cores()
    if threads > cores:
        get_logger("threads").warning(
            f"`{key}` = {threads} is more than the {cores} core(s) this process may run on (affinity and cgroup "
            "quota); its threads will compete for cores (docs/scaling.md, Threads)"
        )
    return threads


def setup_threads(num_threads: int | None, role: str, key: str = "num_threads") -> int:
    """Sets torch's intra-op threads (`num_threads`, else `default_threads(role)`) and one inter-op thread (nothing
    here runs ops concurrently; torch would size that pool by the machine); returns the intra-op count."""
    import torch

    threads = default_threads(role) if num_threads is None else check_threads(num_threads, key)
    torch.set_num_threads(threads)
    os.environ.setdefault("OMP_NUM_THREADS", str(threads))
    # Fixed once per process: a second call (e.g. in a test session) keeps the first setting.
    with contextlib.suppress(RuntimeError):
        torch.set_num_interop_threads(1)
    return threads


def pin_current_thread(threads: int, mask: set[int] | None = None) -> set[int]:
    """Pins the calling thread (and the OpenMP threads it starts later) to the last `threads` cores of the mask,
    leaving the first ones to the process's other threads; returns the cores (the whole mask if too few)."""
    cores = sorted(affinity() if mask is None else mask)
    chosen = set(cores[-threads:]) if threads < len(cores) else set(cores)
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, chosen)  # pid 0: the calling thread only (Linux)
    return chosen

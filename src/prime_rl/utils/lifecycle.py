"""Processes die with the process that launched them: a parent-death signal set between fork and exec (Linux), and
a watchdog thread in the child that exits once its launcher is gone (everywhere, and for grandchildren too; one in a
process a library started, such as vLLM's engine core, first kills that process's own children)."""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import signal
import sys
import threading
import time
from collections.abc import Callable

LAUNCHER_PID_ENV = "PRIME_RL_LAUNCHER_PID"
"""Environment variable holding the pid of the process whose death must end this one."""
POLL_SECONDS = 0.5
_PR_SET_PDEATHSIG = 1


def launcher_env(env: dict[str, str]) -> dict[str, str]:
    """`env` for a child of this process: the child's watchdog then follows this process."""
    return {**env, LAUNCHER_PID_ENV: str(os.getpid())}


def die_with_parent() -> Callable[[], None] | None:
    """A `preexec_fn` that makes the child receive SIGKILL when this thread of the launcher ends (None off Linux).

    libc is resolved here, before the fork: the child may only make the system call.
    """
    if not sys.platform.startswith("linux"):
        return None
    prctl = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True).prctl
    parent = os.getpid()

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent:  # the launcher died before the signal was armed
            os._exit(1)

    return preexec


def alive(pid: int) -> bool:
    """Whether `pid` runs: a zombie (dead, not yet reaped) does not count, a process whose main thread is a zombie
    while other threads still exit (and hold its files) does."""
    if not os.path.isdir("/proc/self/task"):  # no procfs (macOS)
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            pass
        return True
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except FileNotFoundError:
        return False
    return any(_task_state(pid, tid) not in ("Z", "X", None) for tid in tasks)


def alive_after(pids: list[int], seconds: float) -> list[int]:
    """Waits up to `seconds` for every process of `pids` to end; returns those still alive."""
    deadline = time.monotonic() + seconds
    while any(alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    return [p for p in pids if alive(p)]


def _task_state(pid: int, tid: str) -> str | None:
    try:
        with open(f"/proc/{pid}/task/{tid}/stat") as f:
            return f.read().rpartition(")")[2].split()[0]
    except FileNotFoundError:
        return None


def descendants(root: int) -> list[int]:
    """Pids of every process below `root`, parents before their children (empty without procfs)."""
    if not os.path.isdir("/proc/self/task"):
        return []
    children: dict[int, list[int]] = {}
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{entry}/stat") as f:
                children.setdefault(int(f.read().rpartition(")")[2].split()[1]), []).append(int(entry))
        except (FileNotFoundError, ProcessLookupError):
            continue
    found, todo = [], list(children.get(root, []))
    while todo:
        pid = todo.pop(0)
        found.append(pid)
        todo += children.get(pid, [])
    return found


def watch_parent(name: str, poll: float = POLL_SECONDS) -> None:
    """Exits this process once its launcher (`PRIME_RL_LAUNCHER_PID`) is gone or it was re-parented (the direct
    parent, e.g. `torchrun` between `rl` and a rank, died). No-op when started by hand."""
    launcher = os.environ.get(LAUNCHER_PID_ENV)
    if launcher:
        _watch(name, int(launcher), poll, kill_descendants=False)


def watch_launcher(name: str, poll: float = POLL_SECONDS) -> None:
    """`watch_parent` for a process a library started (vLLM's engine core): once orphaned, it first SIGKILLs its own
    descendants, which run none of our code and so watch nothing. No-op in the launcher itself (a library that kept
    the work in-process)."""
    launcher = os.environ.get(LAUNCHER_PID_ENV)
    if launcher and int(launcher) != os.getpid():
        _watch(name, int(launcher), poll, kill_descendants=True)


def _watch(name: str, launcher_pid: int, poll: float, kill_descendants: bool) -> None:
    parent = os.getppid()

    def orphaned() -> bool:
        return os.getppid() != parent or not alive(launcher_pid)

    def run() -> None:
        while not orphaned():
            time.sleep(poll)
        print(f"{name}: launcher (pid {launcher_pid}) is gone: exiting", file=sys.stderr, flush=True)
        if kill_descendants:
            for pid in descendants(os.getpid()):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        os._exit(1)

    if orphaned():
        run()
    threading.Thread(target=run, name="watch-parent", daemon=True).start()

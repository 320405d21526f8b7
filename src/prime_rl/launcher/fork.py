"""Runs a function in a forked child and re-raises its exception in the parent, so what the function imports (torch,
transformers) stays out of the parent's memory."""

from __future__ import annotations

import multiprocessing
import traceback
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

from prime_rl.utils.config import ConfigError, RunError
from prime_rl.utils.config.cli import load_target
from prime_rl.utils.lifecycle import die_with_parent


def _child(writer: Connection, arm: Callable[[], None] | None, target: str, args: tuple) -> None:
    if arm is not None:  # a SIGKILLed `rl` must not leave its checks running (benchmarks/soak.py found one)
        arm()
    try:
        load_target(target)(*args)
    except BaseException as e:
        if not isinstance(e, ConfigError | RunError | KeyboardInterrupt):
            traceback.print_exc()  # a bug: its traceback is only printable here
        try:
            writer.send(e)
        except Exception:  # an exception that does not pickle travels as its type name and message
            writer.send(RuntimeError(f"{type(e).__name__}: {e}"))
        return
    writer.send(None)


def call_in_fork(target: str, *args: Any) -> None:
    """Imports `target` (`"pkg.module:fn"`) and calls it with `args` in a forked child; its exception (ConfigError,
    RunError, ...) is raised here."""
    context = multiprocessing.get_context("fork")
    reader, writer = context.Pipe(duplex=False)
    child = context.Process(target=_child, args=(writer, die_with_parent(), target, args), daemon=True)
    child.start()
    writer.close()
    try:
        error = reader.recv()
    except EOFError:
        child.join()
        raise RuntimeError(f"{target} died in its child process (exit code {child.exitcode})") from None
    child.join()
    if error is not None:
        raise error

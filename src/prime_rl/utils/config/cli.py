"""The `main` of every console script: `--help` and config errors answer before the command's loop module (and
torch) is imported; a config error exits 2 and an expected run failure exits 1, each with one line."""

from __future__ import annotations

import importlib
import os
import sys
import traceback
from collections.abc import Callable
from typing import Any, TypeVar

from prime_rl.utils.config.base import BaseSettingsConfig
from prime_rl.utils.config.errors import ConfigError, RunError
from prime_rl.utils.config.help import help_text
from prime_rl.utils.config.parsing import parse_config
from prime_rl.utils.lifecycle import watch_parent

C = TypeVar("C", bound=BaseSettingsConfig)


def _fail(prog: str, message: str, code: int) -> None:
    print(f"{prog}: error: {message}", file=sys.stderr, flush=True)
    raise SystemExit(code)


def cli(cls: type[C], prog: str, argv: list[str] | None = None) -> C:
    """Prints help for `--help` (exit 0); exits 2 with one line on a config error; else returns the config."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--help" in argv or "-h" in argv:
        try:
            print(help_text(cls, prog), flush=True)
        except BrokenPipeError:  # `--help | head`: the reader left, which is not an error
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        raise SystemExit(0)
    try:
        return parse_config(cls, argv)
    except ConfigError as e:
        _fail(prog, str(e), 2)
        raise  # unreachable: _fail exits


def load_target(target: str) -> Callable[..., Any]:
    """`"pkg.module:fn"` -> the function (importing its module, the command's loop, happens only here)."""
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)


def run_cli(prog: str, cls: type[C], target: str | Callable[[C], Any], argv: list[str] | None = None) -> None:
    """Parses `cls` from argv, then runs `target(config)` (a `"pkg.module:fn"` string or a function).
    Exit codes: 0 done, 2 config error (also one raised while setting up), 1 run error, 130 interrupted.
    A RunError is one line; any other exception is a bug: its traceback, then one line naming the process.
    Started by `rl`, the process exits once `rl` is gone (`utils/lifecycle.py`)."""
    watch_parent(prog)
    config = cli(cls, prog, argv)
    try:
        run = load_target(target) if isinstance(target, str) else target
        run(config)
    except ConfigError as e:
        _fail(prog, str(e), 2)
    except RunError as e:
        _fail(prog, str(e), 1)
    except KeyboardInterrupt:
        raise SystemExit(130) from None
    except Exception as e:
        traceback.print_exc()
        _fail(prog, f"{type(e).__name__}: {e}", 1)

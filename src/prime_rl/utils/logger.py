"""Process-wide logging: one console handler and, optionally, one file handler."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from prime_rl.run_dir import RunDir

if TYPE_CHECKING:
    from prime_rl.utils.config.sections import LogConfig

_FORMAT = "%(asctime)s %(levelname)s [%(name)s] %(message)s"


def setup_logger(name: str, level: str = "INFO", file: Path | None = None) -> logging.Logger:
    """Configures the `prime_rl` logger once per process and returns `prime_rl.<name>`."""
    root = logging.getLogger("prime_rl")
    root.setLevel(level.upper())
    for handler in root.handlers:
        handler.close()  # a file handler of an earlier set-up in this process would keep its file open
    root.handlers.clear()
    console = logging.StreamHandler(sys.stderr)
    console.setFormatter(logging.Formatter(_FORMAT, datefmt="%H:%M:%S"))
    root.addHandler(console)
    if file is not None:
        file.parent.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(file)
        handler.setFormatter(logging.Formatter(_FORMAT))
        root.addHandler(handler)
    root.propagate = False
    return logging.getLogger(f"prime_rl.{name}")


def get_logger(name: str) -> logging.Logger:
    return logging.getLogger(f"prime_rl.{name}")


def setup_process_logger(name: str, config: LogConfig, output_dir: Path, main: bool = True) -> logging.Logger:
    """`setup_logger` as a `[log]` section says: its level, and `output_dir/logs/<name>.log` when `file` is on.
    A trainer rank other than rank 0 (`main` False) logs warnings and errors to the console only."""
    if not main:
        return setup_logger(name, "warning")
    return setup_logger(name, config.level, RunDir(output_dir).log(name) if config.file else None)

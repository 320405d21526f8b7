"""The two ways a command fails on purpose: a bad configuration (exit 2) and an expected failure of a run (exit 1)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from prime_rl.utils.config.base import BaseSettingsConfig


class ConfigError(Exception):
    """A configuration problem, reported as one line naming the key or file."""


class RunError(Exception):
    """An expected failure of a running command (a server that stays down, a refused request, a missing file),
    reported as one line naming the process and the cause instead of a traceback."""


@contextmanager
def config_key(config: BaseSettingsConfig, key: str) -> Iterator[None]:
    """Re-raises a ConfigError from inside (a bad `import_path`, an unknown environment) as one line that names `key`
    and the file or command line that set it: `rl.toml: `trainer.loss`: import_path ...`."""
    try:
        yield
    except ConfigError as e:
        raise ConfigError(f"{config.source_of(key)}: `{key}`: {e}") from None

"""Configuration: pydantic models (`base.py`), parsing of `@ file.toml`, `--a.b value` and `PRIME_` variables
(`parsing.py`), `--help` (`help.py`), plug-in imports (`imports.py`), the console-script runner (`cli.py`) and the
sections every command shares (`sections.py`, imported from there).

Nothing here imports torch: `--help` and config errors answer before any heavy import.
"""

from prime_rl.utils.config.base import BaseConfig, BaseSettingsConfig, model_types, type_tag, type_union
from prime_rl.utils.config.cli import cli, run_cli
from prime_rl.utils.config.errors import ConfigError, RunError, config_key
from prime_rl.utils.config.help import help_text
from prime_rl.utils.config.imports import bind_kwargs, import_object
from prime_rl.utils.config.parsing import parse_config, split_argv

__all__ = [
    "BaseConfig",
    "BaseSettingsConfig",
    "ConfigError",
    "RunError",
    "bind_kwargs",
    "cli",
    "config_key",
    "help_text",
    "import_object",
    "model_types",
    "parse_config",
    "run_cli",
    "split_argv",
    "type_tag",
    "type_union",
]

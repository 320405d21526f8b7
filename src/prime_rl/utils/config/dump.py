"""Writes a validated config back as TOML (the resolved config a launcher hands to a child process)."""

from __future__ import annotations

import tomli_w
from pydantic import BaseModel

from prime_rl.utils.config.errors import ConfigError


def _none_overrides(model: BaseModel, prefix: str = "") -> list[str]:
    out = []
    for key, field in type(model).model_fields.items():
        value = getattr(model, key)
        if isinstance(value, BaseModel):
            out += _none_overrides(value, f"{prefix}{key}.")
        elif value is None and field.get_default(call_default_factory=True) is not None:
            out.append(f"{prefix}{key}")
    return out


def config_toml(config: BaseModel, name: str) -> str:
    """The TOML text that parses back to `config`; ConfigError naming `name` when a value cannot be expressed."""
    data = config.model_dump(mode="json", exclude_none=True)
    # TOML has no null: a None that is not the default would silently become the default again.
    if type(config).model_validate(data).model_dump() != config.model_dump():
        lost = sorted(_none_overrides(config))
        raise ConfigError(f"`{name}` fields set to None differ from their defaults and cannot be written: {lost}")
    return tomli_w.dumps(data)

"""The base classes of every config section and command config, `type` unions, and the type introspection shared by
the parser, the key checks and `--help`."""

from __future__ import annotations

import os
import types
import typing
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel, ConfigDict, Discriminator, PrivateAttr, Tag, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict


def _strict_number(annotation: Any, value: Any) -> None:
    """Raises ValueError for a bool or a float given to an int field and a number given to a bool field: pydantic's
    lax mode would accept `max_steps = 1e3` as 1000 and `compile = 1` as True; the docs promise strict types."""
    origin = get_origin(annotation)
    if origin is typing.Annotated:
        return _strict_number(get_args(annotation)[0], value)
    if origin in (list, tuple) and isinstance(value, list | tuple):
        args = [a for a in get_args(annotation) if a is not Ellipsis]
        for i, item in enumerate(value):
            if args:
                _strict_number(args[min(i, len(args) - 1)], item)
        return
    kinds = set(get_args(annotation)) if origin in (Union, types.UnionType) else {annotation}
    if isinstance(value, bool):
        if kinds & {int, float} and bool not in kinds:
            raise ValueError(f"Input should be a valid {'integer' if float not in kinds else 'number'}, not a bool")
    elif isinstance(value, float):
        if int in kinds and float not in kinds:
            raise ValueError("Input should be a valid integer, not a float")
    elif isinstance(value, int) and bool in kinds and not kinds & {int, float}:
        raise ValueError("Input should be a valid boolean (true or false)")


def key_source(sources: dict[str, str], parts: list[str]) -> str | None:
    """Where the key `parts` was set: its own entry in `sources` (dotted key -> source), else the nearest table's,
    else the sources of the keys below it, else its `PRIME_` environment variable; None if none of these."""
    for n in range(len(parts), 0, -1):
        if (source := sources.get(".".join(parts[:n]))) is not None:
            return source
    under = sorted({s for key, s in sources.items() if key.startswith(f"{'.'.join(parts)}.")}) if parts else []
    if under:
        return ", ".join(under)
    env = "PRIME_" + "__".join(parts).upper()
    return f"environment variable {env}" if parts and env in os.environ else None


class _StrictNumbers:
    """Mixin of both base classes: the `_strict_number` check on every field."""

    @field_validator("*", mode="before")
    @classmethod
    def _strict_numbers(cls, value: Any, info: ValidationInfo) -> Any:
        field = cls.model_fields.get(info.field_name) if info.field_name else None  # type: ignore[attr-defined]
        if field is not None:
            _strict_number(field.annotation, value)
        return value


class BaseConfig(_StrictNumbers, BaseModel):
    """Base for every config section: unknown keys are errors and attribute docstrings are the help text."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True, validate_assignment=True)


class BaseSettingsConfig(_StrictNumbers, BaseSettings):
    """Base for a top-level (command) config: adds `PRIME_` environment variables under the TOML and CLI values."""

    model_config = SettingsConfigDict(
        extra="forbid",
        use_attribute_docstrings=True,
        validate_assignment=True,
        env_prefix="PRIME_",
        env_nested_delimiter="__",
        nested_model_default_partial_update=True,
    )

    _sources: dict[str, str] = PrivateAttr(default_factory=dict)
    """Where each given key came from (`parse_config` fills it): dotted key -> TOML path or `command line`."""
    _files: list[Path] = PrivateAttr(default_factory=list)

    @property
    def config_files(self) -> list[Path]:
        """The `@ file.toml` arguments it was parsed from, in order."""
        return list(self._files)

    def source_of(self, dotted: str) -> str:
        """The TOML file, `command line` or environment variable that set `dotted` (`env[1].args`; else the nearest
        table holding it), or `defaults`."""
        return key_source(self._sources, dotted.replace("[", ".").replace("]", "").split(".")) or "defaults"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # TOML + CLI arrive merged as init kwargs, so they beat the environment.
        return (init_settings, env_settings)


class _TypeOf:
    """Discriminator of a `type_union`: the `type` of a table or model, `default` when a table has none."""

    def __init__(self, default: str):
        self.default = default
        self.__name__ = f"type_or_{default}"  # pydantic names the union's validator after it

    def __call__(self, value: Any) -> str:
        if isinstance(value, dict):
            return value.get("type") or self.default
        return getattr(value, "type", None) or self.default


def type_union(*models: type[BaseModel], default: str = "default") -> Any:
    """A union of config models discriminated on their `type` literal; a table without `type` means `default`."""
    tagged = tuple(typing.Annotated[m, Tag(type_tag(m))] for m in models)
    return typing.Annotated[Union[tagged], Discriminator(_TypeOf(default))]  # noqa: UP007


def union_default(annotation: Any, metadata: tuple | list = ()) -> str:
    """The tag a table without `type` takes in the `type_union` of a field ("default" if there is none)."""
    if get_origin(annotation) is typing.Annotated:
        metadata = [*metadata, *annotation.__metadata__]
    for meta in metadata:
        if isinstance(meta, Discriminator) and isinstance(meta.discriminator, _TypeOf):
            return meta.discriminator.default
    return next((d for arg in get_args(annotation) if (d := union_default(arg)) != "default"), "default")


def model_types(annotation: Any) -> list[type[BaseModel]]:
    """The BaseModel classes an annotation can hold (through Optional, unions, Annotated and lists)."""
    origin = get_origin(annotation)
    if origin is typing.Annotated:
        return model_types(get_args(annotation)[0])
    if origin in (Union, types.UnionType, list, tuple):
        return [m for arg in get_args(annotation) for m in model_types(arg)]
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return []


def type_tag(model: type[BaseModel]) -> str | None:
    """The `type` literal of a union variant (None for a model without a `type` field)."""
    field = model.model_fields.get("type")
    if field is None:
        return None
    args = get_args(field.annotation)
    return args[0] if get_origin(field.annotation) is Literal and args else field.default

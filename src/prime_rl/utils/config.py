"""Configuration: pydantic models, and parsing of `@ file.toml`, `--a.b value` overrides and `PRIME_` env vars.

Precedence (highest first): CLI, TOML files (later file wins), environment variables, defaults.
This module must not import torch: `--help` and config errors answer before any heavy import.
"""

from __future__ import annotations

import difflib
import os
import sys
import tomllib
import types
import typing
from pathlib import Path
from typing import Any, Literal, TypeVar, Union, get_args, get_origin

from pydantic import BaseModel, ConfigDict, Discriminator, Tag, ValidationError
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict


class ConfigError(Exception):
    """A configuration problem, reported as one line naming the key or file."""


class BaseConfig(BaseModel):
    """Base for every config section: unknown keys are errors and attribute docstrings are the help text."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True, validate_assignment=True)


class BaseSettingsConfig(BaseSettings):
    """Base for a top-level (command) config: adds `PRIME_` environment variables under the TOML and CLI values."""

    model_config = SettingsConfigDict(
        extra="forbid",
        use_attribute_docstrings=True,
        validate_assignment=True,
        env_prefix="PRIME_",
        env_nested_delimiter="__",
        nested_model_default_partial_update=True,
    )

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


C = TypeVar("C", bound=BaseSettingsConfig)


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
    tagged = tuple(typing.Annotated[m, Tag(_type_tag(m))] for m in models)
    return typing.Annotated[Union[tagged], Discriminator(_TypeOf(default))]  # noqa: UP007


def _union_default(annotation: Any, metadata: tuple | list = ()) -> str:
    """The tag a table without `type` takes in the `type_union` of a field ("default" if there is none)."""
    if get_origin(annotation) is typing.Annotated:
        metadata = [*metadata, *annotation.__metadata__]
    for meta in metadata:
        if isinstance(meta, Discriminator) and isinstance(meta.discriminator, _TypeOf):
            return meta.discriminator.default
    return next((d for arg in get_args(annotation) if (d := _union_default(arg)) != "default"), "default")


# ---------------------------------------------------------------- argv


def split_argv(argv: list[str]) -> tuple[list[Path], list[str]]:
    """Separates `@ a.toml @ b.toml` (also `@a.toml`) from the remaining `--key value` arguments."""
    files, rest, i = [], [], 0
    while i < len(argv):
        arg = argv[i]
        if arg == "@":
            if i + 1 >= len(argv):
                raise ConfigError("`@` must be followed by a TOML file path")
            files.append(Path(argv[i + 1]))
            i += 2
            continue
        if arg.startswith("@"):
            files.append(Path(arg[1:]))
        else:
            rest.append(arg)
        i += 1
    return files, rest


def _parse_cli_value(raw: str) -> Any:
    """CLI values are strings that pydantic coerces; JSON-like lists/tables and TOML literals are parsed first."""
    if raw[:1] in "[{":
        try:
            return tomllib.loads(f"v = {raw}")["v"]
        except tomllib.TOMLDecodeError:
            import json

            try:
                return json.loads(raw)
            except ValueError:
                return raw
    return raw


def _set_dotted(data: dict, dotted: str, value: Any) -> None:
    keys = dotted.split(".")
    node = data
    for key in keys[:-1]:
        child = node.setdefault(key, {})
        if not isinstance(child, dict):
            raise ConfigError(f"--{dotted}: `{key}` is a value, not a section")
        node = child
    node[keys[-1]] = value


def parse_cli_overrides(args: list[str]) -> dict:
    """Turns `--a.b-c value`, `--flag`, `--no-flag` and `--a.b=value` into a nested dict with snake_case keys."""
    data: dict = {}
    i = 0
    while i < len(args):
        arg = args[i]
        if not arg.startswith("--") or arg == "--":
            raise ConfigError(f"unexpected argument `{arg}` (expected `--key value` or `@ file.toml`)")
        key = arg[2:]
        value: Any
        if "=" in key:
            key, value = key.split("=", 1)
            value = _parse_cli_value(value)
            i += 1
        elif i + 1 < len(args) and not args[i + 1].startswith("--") and args[i + 1] != "@":
            value = _parse_cli_value(args[i + 1])
            i += 2
        else:
            last = key.rsplit(".", 1)
            if last[-1].startswith("no-"):
                key = ".".join([*last[:-1], last[-1][3:]])
                value = False
            else:
                value = True
            i += 1
        _set_dotted(data, key.replace("-", "_"), value)
    return data


# ---------------------------------------------------------------- merging and key checks


def deep_merge(base: dict, override: dict) -> dict:
    """Returns `base` updated by `override`, recursing into tables (a `type` change replaces the table)."""
    out = dict(base)
    for key, value in override.items():
        old = out.get(key)
        same_type = not (
            isinstance(value, dict) and "type" in value and isinstance(old, dict) and old.get("type") != value["type"]
        )
        if isinstance(old, dict) and isinstance(value, dict) and same_type:
            out[key] = deep_merge(old, value)
        else:
            out[key] = value
    return out


def load_toml(path: Path) -> dict:
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: invalid TOML: {e}") from None


def _model_types(annotation: Any) -> list[type[BaseModel]]:
    """The BaseModel classes an annotation can hold (through Optional, unions, Annotated and lists)."""
    origin = get_origin(annotation)
    if origin is typing.Annotated:
        return _model_types(get_args(annotation)[0])
    if origin in (Union, types.UnionType, list, tuple):
        return [m for arg in get_args(annotation) for m in _model_types(arg)]
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return []


def _type_tag(model: type[BaseModel]) -> str | None:
    field = model.model_fields.get("type")
    if field is None:
        return None
    args = get_args(field.annotation)
    return args[0] if get_origin(field.annotation) is Literal and args else field.default


def _pick_variant(variants: list[type[BaseModel]], value: dict, default: str) -> type[BaseModel] | None:
    if len(variants) == 1:
        return variants[0]
    tag = value.get("type") or default
    for variant in variants:
        if _type_tag(variant) == tag:
            return variant
    return None


def _unknown_key_hint(model: type[BaseModel], key: str, prefix: str, siblings: list[type[BaseModel]]) -> str:
    owners = [tag for m in siblings if m is not model and key in m.model_fields and (tag := _type_tag(m))]
    if owners:
        return f" for type {_type_tag(model)!r} (it belongs to type {' | '.join(repr(t) for t in owners)})"
    hint = difflib.get_close_matches(key, list(model.model_fields), n=1)
    return f" (did you mean `{prefix}{hint[0]}`?)" if hint else ""


def check_keys(
    model: type[BaseModel], data: dict, source: str, prefix: str = "", siblings: list[type[BaseModel]] | None = None
) -> None:
    """Raises ConfigError naming the first unknown key in `data`, the source it came from and the closest valid key.

    `siblings` are the other variants of a `type` union: a key of another variant is reported with its type.
    """
    for key, value in data.items():
        dotted = f"{prefix}{key}"
        field = model.model_fields.get(key)
        if field is None:
            hint = _unknown_key_hint(model, key, prefix, siblings or [])
            raise ConfigError(f"{source}: unknown key `{dotted}`{hint}")
        variants = _model_types(field.annotation)
        if not variants:
            continue
        items = value if isinstance(value, list) else [value]
        for item in items:
            default = _union_default(field.annotation, field.metadata)
            if isinstance(item, dict) and (variant := _pick_variant(variants, item, default)) is not None:
                check_keys(variant, item, source, f"{dotted}.", variants)


def _field_path(model: type[BaseModel], loc: tuple) -> str:
    """Dotted field path of a pydantic error location, without the union tags pydantic inserts."""
    parts: list[str] = []
    models: list[type[BaseModel]] = [model]
    for item in loc:
        if isinstance(item, int):
            parts.append(str(item))
            continue
        owner = next((m for m in models if item in m.model_fields), None)
        if owner is None:
            if any(_type_tag(m) == item for m in models) or not models:
                models = [m for m in models if _type_tag(m) == item] or models
                continue
            parts.append(str(item))
            models = []
            continue
        parts.append(item)
        models = _model_types(owner.model_fields[item].annotation)
    return ".".join(parts)


def format_validation_error(error: ValidationError, model: type[BaseModel]) -> str:
    """One line per problem: the dotted path of the field and what is wrong with it."""
    lines = []
    for err in error.errors():
        loc = _field_path(model, err["loc"])
        if err["type"] == "union_tag_invalid":
            tag, expected = err["ctx"]["tag"], err["ctx"]["expected_tags"]
            lines.append(f"`{loc + '.' if loc else ''}type`: unknown type {tag!r} (expected one of: {expected})")
            continue
        quiet = err["type"] in ("missing", "extra_forbidden") or isinstance(err["input"], dict)
        given = "" if quiet else f" (got {err['input']!r})"
        msg = err["msg"].removeprefix("Value error, ")
        lines.append(f"`{loc}`: {msg}{given}" if loc else msg)
    return "; ".join(lines)


def parse_config(cls: type[C], argv: list[str] | None = None) -> C:
    """Builds `cls` from argv (`@ file.toml`, `--key value`), the environment and defaults; raises ConfigError."""
    argv = list(sys.argv[1:] if argv is None else argv)
    files, rest = split_argv(argv)
    merged: dict = {}
    for path in files:
        data = load_toml(path)
        check_keys(cls, data, str(path))
        merged = deep_merge(merged, data)
    cli = parse_cli_overrides(rest)
    check_keys(cls, cli, "command line")
    merged = deep_merge(merged, cli)
    try:
        return cls(**merged)
    except ValidationError as e:
        where = ", ".join(str(p) for p in files) or "command line"
        raise ConfigError(f"invalid config ({where}): {format_validation_error(e, cls)}") from None


# ---------------------------------------------------------------- help


def _describe(model: type[BaseModel], prefix: str = "") -> list[str]:
    lines = []
    for name, field in model.model_fields.items():
        flag = f"--{prefix}{name}".replace("_", "-")
        if name == "type" and _type_tag(model) is not None:
            continue
        variants = _model_types(field.annotation)
        if variants:
            tags = [t for v in variants if (t := _type_tag(v)) is not None]
            kind = "list of tables" if get_origin(field.annotation) is list else "table"
            choice = f" (type: {' | '.join(tags)})" if len(variants) > 1 else ""
            lines.append(f"  {flag}  [{kind}{choice}] {field.description or ''}")
            for variant in variants:
                tag = _type_tag(variant)
                options = _describe(variant, f"{prefix}{name}.")
                if len(variants) > 1 and tag is not None:
                    lines.append(f"    with {flag}.type = {tag!r}:{'' if options else ' (no options)'}")
                lines.extend(options)
            continue
        default = "" if field.is_required() else f" [default: {field.get_default(call_default_factory=True)!r}]"
        lines.append(f"  {flag}  {field.description or ''}{default}")
    return list(dict.fromkeys(lines))


def help_text(cls: type[BaseModel], prog: str) -> str:
    head = f"usage: {prog} [@ config.toml ...] [--key value ...]\n\n{(cls.__doc__ or '').strip()}\n\noptions:"
    env = "\nEnvironment variables PRIME_<SECTION>__<KEY> set values below TOML files and the command line."
    return "\n".join([head, *_describe(cls), env])


def cli(cls: type[C], prog: str, argv: list[str] | None = None) -> C:
    """Entry-point helper: prints help for `--help`, exits 2 with one line on a config error."""
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
        print(f"{prog}: error: {e}", file=sys.stderr)
        raise SystemExit(2) from None


# ---------------------------------------------------------------- import paths


def import_object(path: str, what: str = "object") -> Any:
    """Imports `pkg.module.attr` or `pkg.module:attr`; the working directory is importable. Raises ConfigError."""
    import importlib

    # A module the user just wrote must be found even if this directory was scanned before.
    importlib.invalidate_caches()
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    module_name, sep, attr = path.partition(":") if ":" in path else path.rpartition(".")
    if not sep or not module_name or not attr:
        raise ConfigError(f"import_path `{path}` must look like `pkg.module.fn` or `pkg.module:fn`")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        if e.name is not None and not (module_name == e.name or module_name.startswith(f"{e.name}.")):
            raise ConfigError(f"import_path `{path}`: importing module `{module_name}` failed: {e}") from e
        raise ConfigError(f"import_path `{path}`: module `{module_name}` not found ({e})") from None
    except Exception as e:
        raise ConfigError(
            f"import_path `{path}`: importing module `{module_name}` failed: {type(e).__name__}: {e}"
        ) from e
    if not hasattr(module, attr):
        names = [n for n in dir(module) if not n.startswith("_")]
        hint = difflib.get_close_matches(attr, names, n=3)
        near = f" (close names: {', '.join(hint)})" if hint else ""
        raise ConfigError(f"import_path `{path}`: module `{module_name}` has no attribute `{attr}`{near}")
    obj = getattr(module, attr)
    if what == "function" and not callable(obj):
        raise ConfigError(f"import_path `{path}`: `{attr}` is not callable")
    return obj


def bind_kwargs(fn: Any, path: str, kwargs: dict, n_positional: int = 1) -> None:
    """Checks that `fn(<n_positional args>, **kwargs)` binds to the signature; raises ConfigError naming `path`."""
    import inspect

    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return
    try:
        sig.bind(*([None] * n_positional), **kwargs)
    except TypeError as e:
        raise ConfigError(
            f"import_path `{path}`: kwargs {kwargs} do not fit signature {fn.__name__}{sig}: {e}"
        ) from None

"""Builds a command config from `@ file.toml` arguments, `--key value` overrides, `PRIME_` environment variables and
defaults (that precedence, highest first); every problem is one ConfigError naming the key and where it was set."""

from __future__ import annotations

import difflib
import json
import sys
import tomllib
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from prime_rl.utils.config.base import BaseSettingsConfig, key_source, model_types, type_tag, union_default
from prime_rl.utils.config.errors import ConfigError

C = TypeVar("C", bound=BaseSettingsConfig)

CLI = "command line"
"""The source name of `--key value` arguments in error messages."""

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


# ---------------------------------------------------------------- merging, sources and key checks


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


def flat_sources(data: Any, source: str, prefix: str = "") -> dict[str, str]:
    """`{dotted key: source}` for every table, value and list item of `data` (list items as `env.1.args`)."""
    out = {prefix.rstrip("."): source} if prefix else {}
    items = data.items() if isinstance(data, dict) else enumerate(data) if isinstance(data, list) else ()
    for key, value in items:
        out |= flat_sources(value, source, f"{prefix}{key}.")
    return out


def _pick_variant(variants: list[type[BaseModel]], value: dict, default: str) -> type[BaseModel] | None:
    if len(variants) == 1:
        return variants[0]
    tag = value.get("type") or default
    for variant in variants:
        if type_tag(variant) == tag:
            return variant
    return None


def _unknown_key_hint(model: type[BaseModel], key: str, prefix: str, siblings: list[type[BaseModel]]) -> str:
    owners = [tag for m in siblings if m is not model and key in m.model_fields and (tag := type_tag(m))]
    if owners:
        return f" for type {type_tag(model)!r} (it belongs to type {' | '.join(repr(t) for t in owners)})"
    hint = difflib.get_close_matches(key, list(model.model_fields), n=1)
    return f" (did you mean `{prefix}{hint[0]}`?)" if hint else ""


def check_keys(
    model: type[BaseModel], data: dict, source: str, prefix: str = "", siblings: list[type[BaseModel]] | None = None
) -> None:
    """Raises ConfigError naming the first unknown key in `data`, the source it came from and the closest valid key.

    `siblings` are the other variants of a `type` union: a key of another variant is reported with its type. Items of
    a list of tables are named with their index (`orchestrator.env[1].wieght`).
    """
    for key, value in data.items():
        dotted = f"{prefix}{key}"
        field = model.model_fields.get(key)
        if field is None:
            hint = _unknown_key_hint(model, key, prefix, siblings or [])
            raise ConfigError(f"{source}: unknown key `{dotted}`{hint}")
        variants = model_types(field.annotation)
        if not variants:
            continue
        items = [(f"{dotted}[{i}]", v) for i, v in enumerate(value)] if isinstance(value, list) else [(dotted, value)]
        for name, item in items:
            default = union_default(field.annotation, field.metadata)
            if isinstance(item, dict) and (variant := _pick_variant(variants, item, default)) is not None:
                check_keys(variant, item, source, f"{name}.", variants)


# ---------------------------------------------------------------- validation errors


def field_path(model: type[BaseModel], loc: tuple) -> list[str | int]:
    """The field names and list indices of a pydantic error location, without the union tags pydantic inserts."""
    parts: list[str | int] = []
    models: list[type[BaseModel]] = [model]
    for item in loc:
        if isinstance(item, int):
            parts.append(item)
            continue
        owner = next((m for m in models if item in m.model_fields), None)
        if owner is None:
            if any(type_tag(m) == item for m in models) or not models:
                models = [m for m in models if type_tag(m) == item] or models
                continue
            parts.append(str(item))
            models = []
            continue
        parts.append(item)
        models = model_types(owner.model_fields[item].annotation)
    return parts


def dotted_key(parts: list[str | int]) -> str:
    """`["orchestrator", "env", 1, "args"]` -> `orchestrator.env[1].args`."""
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in parts).lstrip(".")


def _describe_error(err: dict, loc: str) -> str:
    if err["type"] == "union_tag_invalid":
        tag, expected = err["ctx"]["tag"], err["ctx"]["expected_tags"]
        return f"`{loc + '.' if loc else ''}type`: unknown type {tag!r} (expected one of: {expected})"
    quiet = err["type"] in ("missing", "extra_forbidden") or isinstance(err["input"], dict)
    given = "" if quiet else f" (got {err['input']!r})"
    msg = err["msg"].removeprefix("Value error, ")
    return f"`{loc}`: {msg}{given}" if loc else msg


def format_validation_error(error: ValidationError, model: type[BaseModel], sources: dict[str, str]) -> str:
    """`invalid config (<where>): <clause>; ...`, one clause per problem naming the dotted field, and where the failing
    keys were set. A value the user gave once fails in every section it was pushed into: only the given key is told."""
    located = []
    for err in error.errors():
        parts = field_path(model, err["loc"])
        located.append((_describe_error(err, dotted_key(parts)), key_source(sources, [str(p) for p in parts])))
    if any(source for _, source in located):
        located = [(clause, source) for clause, source in located if source]
    where = ", ".join(dict.fromkeys(source for _, source in located if source)) or ", ".join(
        dict.fromkeys(sources.values())
    )
    clauses = "; ".join(dict.fromkeys(clause for clause, _ in located))
    return f"invalid config ({where or CLI}): {clauses}"


def parse_config(cls: type[C], argv: list[str] | None = None) -> C:
    """Builds `cls` from argv (`@ file.toml`, `--key value`), the environment and defaults; raises ConfigError."""
    argv = list(sys.argv[1:] if argv is None else argv)
    files, rest = split_argv(argv)
    merged: dict = {}
    sources: dict[str, str] = {}
    for path in files:
        data = load_toml(path)
        check_keys(cls, data, str(path))
        merged = deep_merge(merged, data)
        sources |= flat_sources(data, str(path))
    cli = parse_cli_overrides(rest)
    check_keys(cls, cli, CLI)
    merged = deep_merge(merged, cli)
    sources |= flat_sources(cli, CLI)
    try:
        config = cls(**merged)
    except ValidationError as e:
        raise ConfigError(format_validation_error(e, cls, sources)) from None
    config._sources, config._files = sources, files
    return config

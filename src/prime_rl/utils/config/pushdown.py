"""Shared fields of a combined config (`rl`; `eval` and the server it starts): copied into the sub-configs unless
set there; contradictions are errors.

Works on the raw (merged TOML + CLI) dicts before validation, so "set explicitly" means "present in the input".
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from prime_rl.utils.config.base import model_types
from prime_rl.utils.config.errors import ConfigError

MISSING = object()
"""Returned by `get_dotted` for a key that is not set."""


def get_dotted(data: Any, dotted: str) -> Any:
    node = data
    for key in dotted.split("."):
        if isinstance(node, BaseModel):
            if key not in node.model_fields_set:
                return MISSING
            node = getattr(node, key)
        elif isinstance(node, dict) and key in node:
            node = node[key]
        else:
            return MISSING
    return node


def set_dotted(data: dict, dotted: str, value: Any) -> None:
    keys = dotted.split(".")
    node = data
    for key in keys[:-1]:
        child = node.get(key)
        if isinstance(child, BaseModel):
            child = child.model_dump(exclude_unset=True)
        if not isinstance(child, dict):
            child = {}
        node[key] = child
        node = child
    node[keys[-1]] = value


def has_field(model: type[BaseModel], dotted: str) -> bool:
    """Whether `model` has the (nested) field `dotted`, e.g. `ckpt.interval`."""
    head, _, rest = dotted.partition(".")
    field = model.model_fields.get(head)
    if field is None:
        return False
    if not rest:
        return True
    return any(has_field(sub, rest) for sub in model_types(field.annotation))


def _same(a: Any, b: Any) -> bool:
    # CLI values are still strings here, TOML values are typed: compare their text.
    return str(a) == str(b)


def push_down(data: dict, shared: dict[str, list[str]], sections: dict[str, type[BaseModel]]) -> dict:
    """Copies each shared top-level value into every section that has the field and did not set it.

    `shared` maps a dotted key to the sections it applies to; a value set only in sections is also set at the top.
    Raises ConfigError when a section sets a different value than the top level, or when two sections set different
    values and the top level sets none.
    """
    data = dict(data)
    for name in sections:
        sub = data.get(name, {})
        data[name] = sub.model_dump(exclude_unset=True) if isinstance(sub, BaseModel) else dict(sub or {})
    for key, targets in shared.items():
        targets = [t for t in targets if has_field(sections[t], key)]
        top = get_dotted(data, key)
        given = {t: v for t in targets if (v := get_dotted(data[t], key)) is not MISSING}
        if top is not MISSING and top is not None:
            for target, value in given.items():
                if not _same(value, top):
                    raise ConfigError(
                        f"`{target}.{key}` = {value!r} contradicts the shared `{key}` = {top!r}; set it in one place"
                    )
            value = top
        elif given:
            distinct = {str(v) for v in given.values()}
            if len(distinct) > 1:
                found = ", ".join(f"`{t}.{key}` = {v!r}" for t, v in given.items())
                raise ConfigError(f"{found} disagree; set the shared `{key}` once at the top level")
            value = next(iter(given.values()))
            set_dotted(data, key, value)  # the top level shows the value the sections share
        else:
            continue
        for target in targets:
            if target not in given:
                set_dotted(data[target], key, value)
    return data


def copy_unset(data: dict, source: str, target: str) -> None:
    """Copies the value at dotted `source` to dotted `target` when `source` is set and `target` is not."""
    value = get_dotted(data, source)
    if value is not MISSING and value is not None and get_dotted(data, target) is MISSING:
        set_dotted(data, target, value)

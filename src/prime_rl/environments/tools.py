"""Plain Python functions as tools: the OpenAI function schema of a function (argument types from its annotations,
descriptions from its Google-style docstring) and the execution of one tool call, whose failures become text."""

from __future__ import annotations

import inspect
import json
import re
import types
import typing
from collections.abc import Callable
from typing import Any, Literal

_JSON_TYPES: dict[Any, str] = {str: "string", int: "integer", float: "number", bool: "boolean", list: "array"}
_JSON_TYPES[dict] = "object"
_SECTION_RE = re.compile(r"^\s*(Args|Arguments|Parameters|Returns|Raises|Yields|Examples?|Notes?):\s*$")
_ARG_RE = re.compile(r"^\s*(\*{0,2}\w+)\s*(?:\([^)]*\))?\s*:\s*(.*)$")


def _json_schema(annotation: Any, where: str) -> dict:
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if annotation in _JSON_TYPES:
        return {"type": _JSON_TYPES[annotation]}
    if origin is Literal:
        return {"type": _JSON_TYPES[type(args[0])], "enum": list(args)}
    if origin in (list, tuple, set, frozenset):
        return {"type": "array", "items": _json_schema(args[0], where)} if args else {"type": "array"}
    if origin is dict:
        return {"type": "object"}
    if origin in (typing.Union, types.UnionType):
        options = [_json_schema(a, where) for a in args if a is not type(None)]
        return options[0] if len(options) == 1 else {"anyOf": options}
    raise TypeError(f"{where}: type `{annotation}` has no JSON schema (use str, int, float, bool, list, dict, Literal)")


def _parse_docstring(doc: str) -> tuple[str, dict[str, str]]:
    """`(description, {argument: description})` of a Google-style docstring (the `Args:` section)."""
    description: list[str] = []
    arguments: dict[str, str] = {}
    section, current = None, None
    for line in inspect.cleandoc(doc).splitlines():
        heading = _SECTION_RE.match(line)
        if heading:
            section, current = heading.group(1), None
        elif section is None:
            description.append(line)
        elif section in ("Args", "Arguments", "Parameters"):
            match = _ARG_RE.match(line)
            if match and not line.startswith((" " * 8, "\t\t")):
                current = match.group(1).lstrip("*")
                arguments[current] = match.group(2).strip()
            elif current and line.strip():
                arguments[current] = f"{arguments[current]} {line.strip()}".strip()
    return " ".join(" ".join(description).split()), arguments


def tool_schema(fn: Callable) -> dict:
    """The OpenAI tool (`{"type": "function", "function": {name, description, parameters}}`) of `fn`. Every argument
    needs a type annotation; arguments without a default are required."""
    name = fn.__name__
    hints = typing.get_type_hints(fn)
    description, docs = _parse_docstring(inspect.getdoc(fn) or "")
    properties: dict[str, dict] = {}
    required: list[str] = []
    for param in inspect.signature(fn).parameters.values():
        where = f"tool `{name}` argument `{param.name}`"
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            raise TypeError(f"{where}: *args and **kwargs cannot be described to the model")
        if param.name not in hints:
            raise TypeError(f"{where} has no type annotation")
        properties[param.name] = _json_schema(hints[param.name], where)
        if param.name in docs:
            properties[param.name]["description"] = docs[param.name]
        if param.default is param.empty:
            required.append(param.name)
    parameters = {"type": "object", "properties": properties, "required": required}
    return {"type": "function", "function": {"name": name, "description": description, "parameters": parameters}}


async def call_tool(tools: dict[str, Callable], call: dict, max_chars: int) -> str:
    """The result of one OpenAI tool call as text (at most `max_chars`). Never raises: an unknown tool, arguments that
    do not bind, or an exception inside the tool come back as `Error: ...` for the model to read."""
    function = call.get("function") or {}
    name = function.get("name")
    if name not in tools:
        return f"Error: unknown tool `{name}` (available: {', '.join(tools)})"
    try:
        arguments = function.get("arguments") or {}
        arguments = json.loads(arguments) if isinstance(arguments, str) else arguments
        if not isinstance(arguments, dict):
            raise TypeError(f"arguments must be a JSON object, got {type(arguments).__name__}")
        inspect.signature(tools[name]).bind(**arguments)
        result = tools[name](**arguments)
        if inspect.isawaitable(result):
            result = await result
    except Exception as e:
        return f"Error: {type(e).__name__}: {e}"
    text = result if isinstance(result, str) else json.dumps(result, ensure_ascii=False, default=str)
    return text if len(text) <= max_chars else f"{text[:max_chars]}... (truncated)"

"""Decoding a request body into JSON the rest of the server can trust: bounded nesting, no lone surrogates."""

from __future__ import annotations

import json
from typing import Any

from prime_rl.inference.engines.base import EngineError

MAX_JSON_DEPTH = 64
"""Deepest nesting of arrays and objects accepted; chat requests need about 5."""


def decode_json(raw: bytes) -> Any:
    """Parses `raw`; raises EngineError (400) naming the field for bad JSON, deep nesting or unencodable strings."""
    try:
        body = json.loads(raw)
    except RecursionError:
        raise EngineError(f"the JSON body is nested more than {MAX_JSON_DEPTH} levels deep") from None
    except ValueError as e:
        raise EngineError(f"malformed JSON body: {e}") from None
    check_json(body)
    return body


def check_json(body: Any) -> None:
    """Walks `body` without recursion; `param` of the error is the dotted path of the offending value or key."""
    stack: list[tuple[Any, str, int]] = [(body, "", 0)]
    while stack:
        value, path, depth = stack.pop()
        if isinstance(value, str):
            _check_text(value, path or None, "the value of")
            continue
        if not isinstance(value, dict | list):
            continue
        if depth >= MAX_JSON_DEPTH:
            raise EngineError(f"the JSON body is nested more than {MAX_JSON_DEPTH} levels deep", path or None)
        items = value.items() if isinstance(value, dict) else enumerate(value)
        for key, item in items:
            name = key.encode("utf-8", "backslashreplace").decode() if isinstance(key, str) else str(key)
            child = f"{path}.{name}" if path else name
            if isinstance(key, str):
                _check_text(key, child, "the key")
            stack.append((item, child, depth + 1))


def _check_text(text: str, param: str | None, what: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        # The param escapes the surrogate (`\ud800`) so the error body itself stays valid UTF-8.
        raise EngineError(f"{what} `{param}` holds a lone UTF-16 surrogate (invalid Unicode)", param) from None

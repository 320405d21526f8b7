"""Tool calls in the Hermes/Qwen format: `<tool_call>{"name": ..., "arguments": {...}}</tool_call>` blocks in the
reply text, parsed into OpenAI `tool_calls` entries. A block that is not a JSON object with a string `name` and an
object `arguments` (or an unclosed block) is not a call: it stays in the content, verbatim."""

from __future__ import annotations

import json
import re
import uuid
from typing import Any

OPEN, CLOSE = "<tool_call>", "</tool_call>"
_BLOCK_RE = re.compile(re.escape(OPEN) + r"(.*?)" + re.escape(CLOSE), re.DOTALL)


def new_call_id() -> str:
    """A fresh OpenAI-style tool call id (`call_` + 24 hex digits)."""
    return f"call_{uuid.uuid4().hex[:24]}"


def _call_of(body: str) -> dict | None:
    """The OpenAI `tool_calls` entry of one block body, or None when the body is malformed."""
    try:
        data = json.loads(body)
    except ValueError:
        return None
    if not isinstance(data, dict) or not isinstance(data.get("name"), str) or not data["name"]:
        return None
    arguments = data.get("arguments", {})
    if isinstance(arguments, str):  # some models emit the arguments already JSON-encoded
        try:
            arguments = json.loads(arguments)
        except ValueError:
            return None
    if not isinstance(arguments, dict):
        return None
    function = {"name": data["name"], "arguments": json.dumps(arguments, ensure_ascii=False)}
    return {"id": new_call_id(), "type": "function", "function": function}


def parse_tool_calls(text: str) -> tuple[str | None, list[dict]]:
    """`(content, tool_calls)` of a reply. Without a well-formed call the content is `text` unchanged; otherwise the
    well-formed blocks are cut out and the rest, stripped, is the content (None when nothing is left)."""
    calls: list[dict] = []
    kept: list[str] = []
    last = 0
    for match in _BLOCK_RE.finditer(text):
        call = _call_of(match.group(1).strip())
        if call is None:
            continue
        kept.append(text[last : match.start()])
        last = match.end()
        calls.append(call)
    if not calls:
        return text, []
    content = "".join([*kept, text[last:]]).strip()
    return content or None, calls


def format_tool_call(name: str, arguments: Any) -> str:
    """The block a model writes to call `name` (the fallback rendering of an assistant message's `tool_calls`)."""
    return f"{OPEN}\n{json.dumps({'name': name, 'arguments': arguments}, ensure_ascii=False)}\n{CLOSE}"

"""Chat messages (and OpenAI `tools`) rendered through the model's chat template.

A template that reads `tools` gets them as `apply_chat_template(..., tools=...)`. A template without tool support
(SmolLM2's) gets the Hermes/Qwen-style fallback: the tool signatures in a system message, assistant `tool_calls`
written back as `<tool_call>` blocks, and `tool` messages as `<tool_response>` blocks in one user message per run
of consecutive tool messages (every template renders system, user and assistant turns, alternating).
"""

from __future__ import annotations

import functools
import json
import re
from typing import Any

from prime_rl.chat.tool_calls import CLOSE, OPEN, format_tool_call

TOOLS_PROMPT = (
    "You can call functions (tools) to help answer. Their JSON signatures are listed between <tools> and </tools>:\n"
    "<tools>\n@SIGNATURES@\n</tools>\n"
    f"To call a function, write a JSON object with its name and arguments between {OPEN} and {CLOSE} tags:\n"
    f'{OPEN}\n{{"name": "function_name", "arguments": {{"argument": "value"}}}}\n{CLOSE}\n'
    "Each result comes back between <tool_response> and </tool_response> tags."
)


@functools.lru_cache(maxsize=16)
def _reads_tools(source: str) -> bool:
    import jinja2
    from jinja2 import meta

    try:
        ast = jinja2.Environment(extensions=["jinja2.ext.loopcontrols"]).parse(source)
    except jinja2.TemplateSyntaxError:  # a transformers-only tag (`{% generation %}`): look at the text instead
        return re.search(r"\btools\b", source) is not None
    return "tools" in meta.find_undeclared_variables(ast)


def supports_tools(tokenizer: Any) -> bool:
    """Whether the tokenizer's chat template renders `tools` itself (else `render_chat` uses the fallback)."""
    template = getattr(tokenizer, "chat_template", None)
    if isinstance(template, dict):
        return "tool_use" in template or any(_reads_tools(t) for t in template.values())
    return isinstance(template, str) and _reads_tools(template)


def _text(content: Any) -> Any:
    """OpenAI content parts (`[{"type": "text", "text": ...}]`) become one string; anything else is kept."""
    if isinstance(content, list) and all(isinstance(p, dict) and p.get("type") == "text" for p in content):
        return "".join(p.get("text", "") for p in content)
    return content


def _arguments(call: dict) -> Any:
    """A call's arguments as an object (templates expect a dict; OpenAI sends a JSON string)."""
    arguments = (call.get("function") or {}).get("arguments", {})
    if isinstance(arguments, str):
        try:
            return json.loads(arguments)
        except ValueError:
            return arguments
    return arguments


def _normalized(message: dict) -> dict:
    out = {**message, "content": _text(message.get("content"))}
    if message.get("tool_calls"):
        out["tool_calls"] = [
            {**c, "function": {**c.get("function", {}), "arguments": _arguments(c)}} for c in message["tool_calls"]
        ]
    return out


def _fallback(messages: list[dict], tools: list[dict] | None) -> list[dict]:
    """The conversation rewritten for a template that knows nothing of tools (see module docstring)."""
    out: list[dict] = []
    responses_at = -1  # index in `out` of the user message collecting the current run of tool results
    for message in messages:
        if message["role"] == "tool":
            block = f"<tool_response>\n{message.get('content') or ''}\n</tool_response>"
            if responses_at == len(out) - 1 and out:
                out[-1] = {"role": "user", "content": f"{out[-1]['content']}\n{block}"}
            else:
                out.append({"role": "user", "content": block})
                responses_at = len(out) - 1
            continue
        if message.get("tool_calls"):
            blocks = [
                format_tool_call(c["function"]["name"], c["function"]["arguments"]) for c in message["tool_calls"]
            ]
            content = "\n".join([message["content"], *blocks] if message.get("content") else blocks)
            message = {"role": "assistant", "content": content}
        out.append({**message, "content": message.get("content") or ""})
    if tools:
        signatures = "\n".join(json.dumps(t, ensure_ascii=False) for t in tools)
        block = TOOLS_PROMPT.replace("@SIGNATURES@", signatures)
        if out and out[0]["role"] == "system":
            out[0] = {**out[0], "content": f"{out[0]['content']}\n\n{block}"}
        else:
            out.insert(0, {"role": "system", "content": block})
    return out


def render_chat(
    tokenizer: Any,
    messages: list[dict],
    tools: list[dict] | None = None,
    add_generation_prompt: bool = True,
    tokenize: bool = True,
) -> list[int] | str:
    """Token ids (or text, `tokenize=False`) of `messages` and `tools` under the tokenizer's chat template."""
    messages = [_normalized(m) for m in messages]
    kwargs: dict[str, Any] = {}
    uses_tools = bool(tools) or any(m["role"] == "tool" or m.get("tool_calls") for m in messages)
    if uses_tools and supports_tools(tokenizer):
        kwargs["tools"] = tools or None
    elif uses_tools:
        messages = _fallback(messages, tools)
    rendered = tokenizer.apply_chat_template(
        messages, add_generation_prompt=add_generation_prompt, tokenize=tokenize, return_dict=False, **kwargs
    )
    return list(rendered) if tokenize else rendered

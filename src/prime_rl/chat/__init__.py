"""Chat rendering shared by the inference server and the environments: prompts with tools through the model's chat
template (or a Hermes-style fallback), and tool calls parsed out of a model reply."""

from prime_rl.chat.render import render_chat, supports_tools
from prime_rl.chat.tool_calls import format_tool_call, new_call_id, parse_tool_calls

__all__ = ["format_tool_call", "new_call_id", "parse_tool_calls", "render_chat", "supports_tools"]

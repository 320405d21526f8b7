"""`ToolEnv`: a multi-turn environment whose environment turns are tool results.

The tools are plain Python functions (sync or async); their schemas (`tool_schema`) go with every request, the
server renders them into the prompt and parses the replies' tool calls. Each call is executed and answered with a
`tool` message; those tokens join the sample as environment tokens (mask False, logprob 0). The episode ends at the
first reply without a tool call, a truncated reply, or `max_turns` model turns. A failing tool never fails the
rollout: its error is the tool message.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from prime_rl.environments.multi_turn import MultiTurnEnv
from prime_rl.environments.rubric import Rubric
from prime_rl.environments.tools import call_tool, tool_schema
from prime_rl.environments.types import Example

if TYPE_CHECKING:
    from prime_rl.client import Completion


class ToolEnv(MultiTurnEnv):
    """Examples, a rubric and a list of tool functions; see the module docstring for the episode."""

    def __init__(
        self,
        name: str,
        dataset: list[Example],
        rubric: Rubric,
        tools: list[Callable],
        eval_dataset: list[Example] | None = None,
        max_turns: int = 4,
        max_tool_chars: int = 2000,
    ):
        """`max_tool_chars` truncates each tool result (a runaway tool cannot blow up the context)."""
        self.name, self.rubric, self.max_turns, self.max_tool_chars = name, rubric, max_turns, max_tool_chars
        self._dataset, self._eval_dataset = dataset, eval_dataset if eval_dataset is not None else []
        self.tools = {fn.__name__: fn for fn in tools}
        if len(self.tools) != len(tools):
            raise ValueError(f"environment `{name}`: two tools share a name: {[fn.__name__ for fn in tools]}")
        self.tool_schemas = [tool_schema(fn) for fn in tools]

    def dataset(self) -> list[Example]:
        return self._dataset

    def eval_dataset(self) -> list[Example]:
        return self._eval_dataset

    def assistant_message(self, completion: Completion) -> dict:
        if not completion.tool_calls:
            return {"role": "assistant", "content": completion.text}
        return {"role": "assistant", "content": completion.text or None, "tool_calls": completion.tool_calls}

    def is_done(self, messages: list[dict], state: dict) -> bool:
        return not messages[-1].get("tool_calls")

    async def env_response(self, messages: list[dict], state: dict) -> list[dict]:
        replies = []
        for call in messages[-1]["tool_calls"]:
            result = await call_tool(self.tools, call, self.max_tool_chars)
            replies.append({"role": "tool", "tool_call_id": call.get("id"), "content": result})
        return replies


def tool_calls_made(completion: list[dict]) -> list[dict]:
    """Every tool call of a rollout's completion, in order."""
    return [call for m in completion if m.get("role") == "assistant" for call in m.get("tool_calls") or []]


def tool_results(completion: list[dict]) -> list[str]:
    """The content of every tool message of a rollout's completion (errors start with `Error:`)."""
    return [m.get("content") or "" for m in completion if m.get("role") == "tool"]

"""Multi-turn environment with exact token prefixes.

After each model turn the environment answers with new messages. The next prompt is the previous prompt ids +
the sampled completion ids + the tokens of the environment messages, sent through `chat_tokens`, so the model
continues from exactly the tokens it produced (no re-tokenisation of its own reply). The environment tokens are
rendered by diffing chat-template text: template(conversation + new messages, generation prompt) minus
template(conversation up to the last assistant turn). Templates append text after the end-of-turn token the
model sampled (SmolLM2: `<|im_end|>` then "\\n"); that bridge is recovered by locating the decoded completion in
the rendered assistant turn. When it cannot be located (a template that rewrites the reply), the next turn is
sampled from messages instead and the trajectory is split into per-turn samples downstream.
"""

from __future__ import annotations

import inspect
from abc import abstractmethod
from typing import TYPE_CHECKING, Any

from prime_rl.chat import render_chat
from prime_rl.environments.base import Environment
from prime_rl.environments.single_turn import completion_turn
from prime_rl.environments.types import Example, Rollout, SamplingConfig

if TYPE_CHECKING:
    from prime_rl.client import Completion, InferenceClient


def render_env_tokens(
    tokenizer: Any,
    messages: list[dict],
    new_messages: list[dict],
    completion_ids: list[int],
    tools: list[dict] | None = None,
) -> list[int] | None:
    """Token ids that follow `completion_ids` when `new_messages` are appended to `messages` (which ends with the
    assistant reply whose tokens are `completion_ids`), up to and including the next generation prompt; `tools` are
    rendered as the server renders them. A reply with `tool_calls` is rendered as the text the model sampled.
    Returns None when the chat template does not render the reply as the model sampled it."""
    if messages[-1].get("tool_calls"):
        sampled_reply = {"role": "assistant", "content": tokenizer.decode(completion_ids, skip_special_tokens=True)}
        messages = [*messages[:-1], sampled_reply]
    reply_start = render_chat(tokenizer, messages[:-1], tools, tokenize=False)
    upto_reply = render_chat(tokenizer, messages, tools, add_generation_prompt=False, tokenize=False)
    full = render_chat(tokenizer, messages + new_messages, tools, tokenize=False)
    if not upto_reply.startswith(reply_start) or not full.startswith(upto_reply):
        return None
    sampled = tokenizer.decode(completion_ids, skip_special_tokens=False)
    at = upto_reply.find(sampled, len(reply_start)) if sampled else -1
    if at < 0:
        return None
    suffix = upto_reply[at + len(sampled) :] + full[len(upto_reply) :]
    return tokenizer.encode(suffix, add_special_tokens=False)


class MultiTurnEnv(Environment):
    """Alternates model turns and environment responses until `is_done`, `max_turns` or a truncated reply.

    Subclasses implement `dataset`, `eval_dataset`, `env_response` and `is_done`; `initial_state` is optional.
    Call `setup(tokenizer)` (the orchestrator does) before the first rollout.
    """

    max_turns: int = 8
    tool_schemas: list[dict] | None = None
    """OpenAI `tools` sent with every request (see `ToolEnv`); None sends none."""

    def initial_state(self, example: Example) -> dict:
        """Per-rollout scratch state handed to `env_response` and `is_done`."""
        return {"example": example}

    @abstractmethod
    def env_response(self, messages: list[dict], state: dict) -> list[dict]:
        """New messages (usually one user/tool message) answering the last assistant message; may be async."""

    @abstractmethod
    def is_done(self, messages: list[dict], state: dict) -> bool:
        """Whether the episode ended after the last assistant message."""

    def assistant_message(self, completion: Completion) -> dict:
        """The chat message of a model reply, recorded in the rollout and shown to `env_response` and `is_done`."""
        return {"role": "assistant", "content": completion.text}

    async def _sample(
        self,
        client: InferenceClient,
        messages: list[dict],
        prompt_ids: list[int] | None,
        sampling: SamplingConfig,
        seed: int | None,
    ) -> Completion:
        tools = {"tools": self.tool_schemas} if self.tool_schemas else {}
        if prompt_ids is None:
            (completion,) = await client.chat(messages, sampling, n=1, seed=seed, **tools)
        else:
            (completion,) = await client.chat_tokens(prompt_ids, sampling, n=1, seed=seed, messages=messages, **tools)
        return completion

    async def rollout(
        self, client: InferenceClient, example: Example, sampling: SamplingConfig, seed: int | None = None
    ) -> Rollout:
        if getattr(self, "tokenizer", None) is None:
            raise RuntimeError(f"environment `{self.name}` is multi-turn: call env.setup(tokenizer) first")
        state = self.initial_state(example)
        messages = list(example.prompt)
        rollout = Rollout(example.example_id, self.name, example.prompt, completion=[], turns=[])
        prompt_ids: list[int] | None = None
        for turn_index in range(self.max_turns):
            completion = await self._sample(client, messages, prompt_ids, sampling, seed)
            rollout.turns.append(completion_turn(completion, sampling))
            reply = self.assistant_message(completion)
            messages.append(reply)
            rollout.completion.append(reply)
            if completion.finish_reason == "length":
                rollout.is_truncated = True
                break
            if self.is_done(messages, state) or turn_index == self.max_turns - 1:
                break
            new_messages = self.env_response(messages, state)
            if inspect.isawaitable(new_messages):
                new_messages = await new_messages
            env_ids = render_env_tokens(
                self.tokenizer, messages, new_messages, completion.completion_ids, self.tool_schemas
            )
            prompt_ids = None if env_ids is None else completion.prompt_ids + completion.completion_ids + env_ids
            messages.extend(new_messages)
            rollout.completion.extend(new_messages)
        return rollout

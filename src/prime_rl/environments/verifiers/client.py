"""The model client a verifiers v1 environment samples through: each chat request its harness sends (via the
verifiers interception server) becomes a request to our inference server, and the reply carries our token ids and
logprobs into the verifiers trace. A turn that continues a sampled reply is sent as exact token ids (`chat_tokens`),
the environment messages rendered as in `MultiTurnEnv`; when they cannot be rendered the turn is sent as messages
and the trace forks there (a new sample)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from verifiers.v1 import AssistantMessage, Client, Response, ToolCall, TurnTokens, Usage
from verifiers.v1.clients.train import serialize_completion, tool_to_wire
from verifiers.v1.dialects.chat import message_to_wire

from prime_rl.environments.multi_turn import render_env_tokens

if TYPE_CHECKING:
    from verifiers.v1.dialects import Dialect
    from verifiers.v1.graph import PendingTurn

    from prime_rl.client import Completion, InferenceClient
    from prime_rl.environments.types import SamplingConfig


def to_vf_tool_calls(calls: list[dict]) -> list[ToolCall] | None:
    """OpenAI `tool_calls` dicts (as our server returns them) as verifiers `ToolCall`s."""
    out = [
        ToolCall(id=c.get("id") or f"call_{i}", name=c["function"]["name"], arguments=c["function"]["arguments"])
        for i, c in enumerate(calls)
    ]
    return out or None


def to_response(completion: Completion, model: str) -> Response:
    """A verifiers `Response` whose `tokens` are exactly what our server sampled."""
    response = Response(
        id="",
        created=0,
        model=model,
        message=AssistantMessage(content=completion.text or None, tool_calls=to_vf_tool_calls(completion.tool_calls)),
        finish_reason=completion.finish_reason if completion.finish_reason in ("stop", "length") else "stop",
        usage=Usage(prompt_tokens=len(completion.prompt_ids), completion_tokens=len(completion.completion_ids)),
        tokens=TurnTokens(
            prompt_ids=completion.prompt_ids,
            completion_ids=completion.completion_ids,
            completion_logprobs=completion.logprobs,
        ),
    )
    if completion.tool_calls:
        response.finish_reason = "tool_calls"
    response.raw = serialize_completion(response, model)
    return response


class PrimeRLClient(Client):
    """A verifiers `Client` over our `InferenceClient`; every request uses the orchestrator's `sampling` (the
    environment's own sampling settings are ignored, so the trainer knows the temperature of every token).
    `completions[session_id]` keeps each rollout's `Completion`s (policy step, finish reason) in call order."""

    def __init__(self, inference: InferenceClient, sampling: SamplingConfig, tokenizer: Any):
        self.inference, self.sampling, self.tokenizer = inference, sampling, tokenizer
        self.completions: dict[str, list[Completion]] = defaultdict(list)

    async def get_response(
        self,
        dialect: Dialect,
        body: dict,
        sampling: Any,
        session_id: str | None = None,
        turn: PendingTurn | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Response:
        request = dialect.parse_request(body)
        messages = [message_to_wire(m) for m in request.messages]
        tools = [tool_to_wire(t) for t in request.tools] if request.tools else None
        prompt_ids = self._continued_prompt(turn, messages, tools)
        extra = {"tools": tools} if tools else {}
        if prompt_ids is None:
            (completion,) = await self.inference.chat(messages, self.sampling, n=1, **extra)
        else:
            (completion,) = await self.inference.chat_tokens(prompt_ids, self.sampling, n=1, messages=messages, **extra)
        self.completions[session_id or ""].append(completion)
        return to_response(completion, body.get("model", self.inference.model))

    def _continued_prompt(
        self, turn: PendingTurn | None, messages: list[dict], tools: list[dict] | None
    ) -> list[int] | None:
        """The previous turn's prompt + sampled ids + the tail messages' tokens, or None (sample from messages)."""
        if turn is None or not turn.tail or len(turn.tail) >= len(messages):
            return None
        previous = turn.previous_renderer_token_ids()
        if previous is None:
            return None
        previous_prompt, previous_completion = previous
        upto_reply = messages[: len(messages) - len(turn.tail)]
        env_ids = render_env_tokens(self.tokenizer, upto_reply, messages[len(upto_reply) :], previous_completion, tools)
        return None if env_ids is None else previous_prompt + previous_completion + env_ids

    async def close(self) -> None:
        """The `InferenceClient` belongs to the orchestrator, which closes it."""

"""The OpenAI-compatible request schema (with prime-rl's extra fields) and the response body built from a result."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from prime_rl.chat import parse_tool_calls
from prime_rl.inference.engines.base import EngineError, GenerationResult, SamplingParams

INT64_MAX = 2**63 - 1
MIN_TEMPERATURE = 1e-3
"""Smallest positive temperature: `logits / temperature` must stay finite in float32 (0 means greedy)."""
MAX_TEMPERATURE = 100.0
ROLES = ("system", "user", "assistant", "tool")

TOOL_CHOICES = ("auto", "none")

TokenId = Annotated[int, Field(ge=0, le=INT64_MAX)]


class ToolFunction(BaseModel):
    """The `function` of an OpenAI tool: its name, what it does, and a JSON schema of its arguments."""

    model_config = ConfigDict(extra="forbid", strict=True)

    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class Tool(BaseModel):
    """One entry of `tools` (only function tools exist)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    type: Literal["function"]
    function: ToolFunction


class ChatCompletionRequest(BaseModel):
    """Body of `POST /v1/chat/completions` and (with `tokens`) `POST /v1/chat/completions/tokens`.

    Types are strict (`"10"`, `true` or `10.0` is not an integer); integers are int64 at most. Limits that depend on
    the model (`top_k` <= vocabulary, `max_tokens` <= `max_model_len`, `n` <= `max_batch_size`) are the engine's.
    """

    model_config = ConfigDict(extra="forbid", strict=True)

    model: str | None = None
    messages: list[dict[str, Any]] | None = None
    tokens: list[TokenId] | None = None
    n: int = Field(default=1, ge=1, le=INT64_MAX)
    temperature: float = Field(default=1.0, ge=0.0, le=MAX_TEMPERATURE, allow_inf_nan=False)
    top_p: float = Field(default=1.0, gt=0.0, le=1.0, allow_inf_nan=False)
    top_k: int = Field(default=-1, ge=-1, le=INT64_MAX)
    min_p: float = Field(default=0.0, ge=0.0, le=1.0, allow_inf_nan=False)
    max_tokens: int | None = Field(default=None, ge=1, le=INT64_MAX)
    max_completion_tokens: int | None = Field(default=None, ge=1, le=INT64_MAX)
    min_tokens: int = Field(default=0, ge=0, le=INT64_MAX)
    stop: str | list[str] | None = None
    seed: int | None = Field(default=None, ge=-INT64_MAX - 1, le=INT64_MAX)
    logprobs: bool = False
    top_logprobs: int | None = Field(default=None, ge=0, le=20)
    return_token_ids: bool = False
    stream: bool = False
    stream_options: dict[str, Any] | None = None
    tools: list[Tool] | None = None
    tool_choice: str | dict[str, Any] | None = None

    @model_validator(mode="after")
    def _check(self) -> ChatCompletionRequest:
        if 0 < self.temperature < MIN_TEMPERATURE:
            raise EngineError(
                f"`temperature` must be 0 (greedy) or at least {MIN_TEMPERATURE} (got {self.temperature!r})",
                "temperature",
            )
        for i, message in enumerate(self.messages or []):
            _check_message(i, message)
        _check_tools(self.tools or [], self.tool_choice)
        if self.top_logprobs and not self.logprobs:
            raise EngineError("`top_logprobs` requires `logprobs: true`", "top_logprobs")
        limit = self.max_tokens or self.max_completion_tokens
        if limit is not None and self.min_tokens > limit:
            raise EngineError(f"`min_tokens` ({self.min_tokens}) exceeds `max_tokens` ({limit})", "min_tokens")
        return self

    @property
    def parses_tool_calls(self) -> bool:
        """Whether `<tool_call>` blocks of the replies become `tool_calls` (tools given, `tool_choice` not "none")."""
        return bool(self.tools) and self.tool_choice != "none"

    def tool_dicts(self) -> list[dict] | None:
        """`tools` as plain JSON objects (unset optional fields left out), as chat templates expect them."""
        return [t.model_dump(exclude_none=True) for t in self.tools] if self.tools else None

    def sampling_params(self) -> SamplingParams:
        stop = [self.stop] if isinstance(self.stop, str) else list(self.stop or [])
        return SamplingParams(
            n=self.n,
            temperature=self.temperature,
            top_p=self.top_p,
            top_k=max(self.top_k, 0),
            min_p=self.min_p,
            max_tokens=self.max_tokens or self.max_completion_tokens,
            min_tokens=self.min_tokens,
            stop=[s for s in stop if s],
            seed=self.seed,
            logprobs=self.logprobs,
            top_logprobs=self.top_logprobs or 0,
        )


def _check_message(i: int, message: dict[str, Any]) -> None:
    role = message.get("role")
    if role not in ROLES:
        shown = f"`{role}`" if isinstance(role, str) else f"a {type(role).__name__}"
        roles = ", ".join(f"`{r}`" for r in ROLES)
        raise EngineError(f"`messages.{i}.role` is {shown}; expected one of {roles}", f"messages.{i}.role")
    content = message.get("content")
    parts_ok = isinstance(content, list) and all(
        isinstance(p, dict) and p.get("type") == "text" and isinstance(p.get("text"), str) for p in content
    )
    if not (content is None or isinstance(content, str) or parts_ok):
        raise EngineError(
            f"`messages.{i}.content` must be a string or a list of `{{'type': 'text', 'text': ...}}` parts",
            f"messages.{i}.content",
        )
    _check_tool_calls(i, role, message.get("tool_calls"))


def _check_tool_calls(i: int, role: str, calls: Any) -> None:
    if calls is None:
        return
    where = f"messages.{i}.tool_calls"
    if role != "assistant":
        raise EngineError(f"`{where}`: only assistant messages carry tool calls (this one is `{role}`)", where)
    if not isinstance(calls, list):
        raise EngineError(f"`{where}` must be a list", where)
    for j, call in enumerate(calls):
        function = call.get("function") if isinstance(call, dict) else None
        ok = (
            isinstance(function, dict)
            and call.get("type", "function") == "function"
            and isinstance(function.get("name"), str)
            and isinstance(function.get("arguments"), str | dict)
        )
        if not ok:
            raise EngineError(
                f"`{where}.{j}` must be `{{'type': 'function', 'function': {{'name': str, 'arguments': str}}}}`",
                f"{where}.{j}",
            )


def _check_tools(tools: list[Tool], tool_choice: Any) -> None:
    names = [t.function.name for t in tools]
    for j, name in enumerate(names):
        if name in names[:j]:
            raise EngineError(f"`tools.{j}.function.name`: `{name}` is declared twice", f"tools.{j}.function.name")
    if tool_choice is not None and tool_choice not in TOOL_CHOICES:
        raise EngineError(
            f"`tool_choice` must be `auto` or `none` (got {_shown(tool_choice)}; forcing a call is not supported)",
            "tool_choice",
        )


class ScoreRequest(BaseModel):
    """Body of `POST /v1/logprobs`: the logprob of each of `tokens[start:]` given its prefix, under the served weights
    (teacher forcing, nothing sampled). `temperature` divides the logits before `log_softmax`; the default 1 is the
    model's own distribution."""

    model_config = ConfigDict(extra="forbid", strict=True)

    model: str | None = None
    tokens: list[TokenId] = Field(min_length=2)
    start: int = Field(default=1, ge=1, le=INT64_MAX)
    temperature: float = Field(default=1.0, ge=MIN_TEMPERATURE, le=MAX_TEMPERATURE, allow_inf_nan=False)


def parse_request(body: Any, schema: type[BaseModel] = ChatCompletionRequest) -> Any:
    """Validates a decoded JSON body against `schema`; raises EngineError naming the first offending field (all
    unknown ones)."""
    if not isinstance(body, dict):
        raise EngineError("the request body must be a JSON object")
    unknown = sorted(set(body) - set(schema.model_fields))
    if unknown:
        names = ", ".join(f"`{k}`" for k in unknown)
        raise EngineError(f"unknown field{'s' if len(unknown) > 1 else ''} {names}", unknown[0])
    try:
        return schema.model_validate(body)
    except ValidationError as e:
        # A union field fails once per branch: report the branch that got deepest into the value.
        first = e.errors()[0]["loc"][:1]
        err = max((x for x in e.errors() if x["loc"][:1] == first), key=lambda x: len(_param(body, x["loc"]) or ""))
        param = _param(body, err["loc"])
        raise EngineError(f"`{param}`: {err['msg']} (got {_shown(err['input'])})", param) from None


def _param(body: Any, loc: tuple) -> str | None:
    """The dotted path of `loc` inside `body`, without pydantic's union-branch tags (`stop.str` is `stop`)."""
    path, node = [], body
    for part in loc:
        in_dict = isinstance(node, dict) and part in node
        in_list = isinstance(node, list) and isinstance(part, int) and part < len(node)
        if in_dict or in_list:
            node = node[part]
            path.append(str(part))
    return ".".join(path) or None


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else f"{text[:77]}..."


def assistant_message(text: str, finish_reason: str, parse_tools: bool) -> tuple[dict, str]:
    """The choice's `message` and `finish_reason`: with `parse_tools`, well-formed `<tool_call>` blocks become
    `tool_calls` and a reply that stopped by itself after one finishes with "tool_calls"."""
    if not parse_tools:
        return {"role": "assistant", "content": text}, finish_reason
    content, calls = parse_tool_calls(text)
    if not calls:
        return {"role": "assistant", "content": text}, finish_reason
    return {"role": "assistant", "content": content, "tool_calls": calls}, (
        "tool_calls" if finish_reason == "stop" else finish_reason
    )


def _logprob_entry(token_text: Callable[[int], str], token_id: int, logprob: float) -> dict:
    text = token_text(token_id)
    return {"token": text, "logprob": logprob, "bytes": list(text.encode("utf-8"))}


def build_response(
    result: GenerationResult,
    model: str,
    request: ChatCompletionRequest,
    token_text: Callable[[int], str],
) -> dict:
    """The `chat.completion` body, with `token_ids`, `prompt_token_ids` and `policy_step` extras."""
    choices = []
    for index, choice in enumerate(result.choices):
        logprobs = None
        if request.logprobs:
            content = []
            for t, (token_id, lp) in enumerate(zip(choice.token_ids_T, choice.logprobs_T, strict=True)):
                entry = _logprob_entry(token_text, token_id, lp)
                tops = choice.top_logprobs_T[t] if choice.top_logprobs_T else []
                entry["top_logprobs"] = [_logprob_entry(token_text, i, v) for i, v in tops]
                content.append(entry)
            logprobs = {"content": content}
        message, finish_reason = assistant_message(choice.text, choice.finish_reason, request.parses_tool_calls)
        body = {"index": index, "message": message, "finish_reason": finish_reason, "logprobs": logprobs}
        if request.return_token_ids:
            body["token_ids"] = choice.token_ids_T
        choices.append(body)
    completion_tokens = sum(len(c.token_ids_T) for c in result.choices)
    response = {
        "id": f"chatcmpl-{uuid.uuid4().hex}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": choices,
        "usage": {
            "prompt_tokens": len(result.prompt_ids),
            "completion_tokens": completion_tokens,
            "total_tokens": len(result.prompt_ids) + completion_tokens,
        },
        "policy_step": result.policy_step,
    }
    if request.return_token_ids:
        response["prompt_token_ids"] = result.prompt_ids
    return response

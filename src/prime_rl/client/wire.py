"""The HTTP side of sampling: the request body built from `SamplingConfig`, and the response parsed into
`Completion`s (token ids, logprobs, the policy step that sampled them); and the answer of the scoring route."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import httpx

from prime_rl.client.errors import InferenceError

if TYPE_CHECKING:
    from prime_rl.utils.config.sections import SamplingConfig


@dataclass
class Completion:
    """One sampled choice: `completion_ids` include the terminating EOS token when the model stopped by itself."""

    text: str
    prompt_ids: list[int]
    completion_ids: list[int]
    logprobs: list[float]
    finish_reason: str
    policy_step: int
    tool_calls: list[dict] = field(default_factory=list)
    """OpenAI `tool_calls` the server parsed out of the reply (requests with `tools`); `text` is the rest."""


def root_url(base_url: str) -> str:
    """`http://host:port/v1` -> `http://host:port` (the control routes live at the root)."""
    url = base_url.rstrip("/")
    return url[: -len("/v1")] if url.endswith("/v1") else url


def request_body(model: str, sampling: SamplingConfig, n: int, seed: int | None) -> dict[str, Any]:
    """The sampling part of a chat request: every `SamplingConfig` field, the seed, and always `logprobs` and
    `return_token_ids`."""
    return {"model": model, "n": n, **sampling.model_dump(), "seed": seed, "logprobs": True, "return_token_ids": True}


def parse_completions(response: httpx.Response, url: str) -> list[Completion]:
    """One `Completion` per choice of a chat-completions response (with `return_token_ids`)."""
    try:
        data = response.json()
        prompt_ids = list(data["prompt_token_ids"])
        policy_step = int(data.get("policy_step", 0))
        out = []
        for choice in data["choices"]:
            ids = list(choice["token_ids"])
            logprobs = [float(item["logprob"]) for item in (choice.get("logprobs") or {}).get("content") or []]
            if len(logprobs) != len(ids):
                raise ValueError(f"{len(ids)} token ids but {len(logprobs)} logprobs")
            text = choice["message"]["content"] or ""
            calls = list(choice["message"].get("tool_calls") or [])
            out.append(Completion(text, prompt_ids, ids, logprobs, choice["finish_reason"], policy_step, calls))
        return out
    except (KeyError, TypeError, ValueError) as e:
        raise InferenceError(f"malformed response from {url}: {type(e).__name__}: {e}") from None


def parse_logprobs(data: Any, expected: int, url: str) -> list[float]:
    """The `logprobs` of a `/v1/logprobs` response, which must hold `expected` floats."""
    try:
        logprobs = [float(x) for x in data["logprobs"]]
    except (KeyError, TypeError, ValueError) as e:
        raise InferenceError(f"malformed response from {url}: {type(e).__name__}: {e}") from None
    if len(logprobs) != expected:
        raise InferenceError(f"malformed response from {url}: {len(logprobs)} logprobs for {expected} scored tokens")
    return logprobs

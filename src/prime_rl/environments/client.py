"""Async client for our OpenAI-compatible inference server(s) (DESIGN.md section 6), returning token ids and logprobs.

Requests go round-robin over `base_urls`. Connection errors, timeouts and 5xx answers are retried with exponential
backoff (`retry_backoff * 2**attempt` seconds) on the next server; then a `SamplingError` names the server URLs.
"""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import asdict, dataclass
from typing import Any

import httpx

from prime_rl.environments.base import SamplingArgs


class SamplingError(Exception):
    """The inference server refused a request, or stayed unreachable after all retries."""


@dataclass
class Completion:
    """One sampled choice: `completion_ids` include the terminating EOS token when the model stopped by itself."""

    text: str
    prompt_ids: list[int]
    completion_ids: list[int]
    logprobs: list[float]
    finish_reason: str
    policy_step: int


def request_body(model: str, sampling: SamplingArgs, n: int) -> dict[str, Any]:
    """The sampling fields of a chat request; `logprobs` and `return_token_ids` are always on."""
    return {"model": model, "n": n, **asdict(sampling), "logprobs": True, "return_token_ids": True}


def parse_response(data: dict, url: str) -> list[Completion]:
    """Turns a chat-completions response (with `return_token_ids`) into one `Completion` per choice."""
    try:
        prompt_ids = list(data["prompt_token_ids"])
        policy_step = int(data.get("policy_step", 0))
        out = []
        for choice in data["choices"]:
            ids = list(choice["token_ids"])
            logprobs = [float(item["logprob"]) for item in (choice.get("logprobs") or {}).get("content") or []]
            if len(logprobs) != len(ids):
                raise ValueError(f"{len(ids)} token ids but {len(logprobs)} logprobs")
            text = choice["message"]["content"] or ""
            out.append(Completion(text, prompt_ids, ids, logprobs, choice["finish_reason"], policy_step))
        return out
    except (KeyError, TypeError, ValueError) as e:
        raise SamplingError(f"malformed response from {url}: {type(e).__name__}: {e}") from None


class SamplingClient:
    """Samples chat completions (from messages or from exact prompt token ids) with token ids and logprobs."""

    def __init__(
        self,
        base_urls: list[str],
        model: str,
        api_key: str | None = None,
        timeout: float = 600,
        max_retries: int = 5,
        retry_backoff: float = 1.0,
    ):
        if not base_urls:
            raise ValueError("SamplingClient needs at least one base URL")
        self.base_urls = [u.rstrip("/") for u in base_urls]
        self.model, self.max_retries, self.retry_backoff = model, max_retries, retry_backoff
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        limits = httpx.Limits(max_connections=None, max_keepalive_connections=64)
        self._http = httpx.AsyncClient(headers=headers, timeout=timeout, limits=limits)
        self._next_url = itertools.cycle(range(len(self.base_urls)))

    async def chat(self, messages: list[dict], sampling: SamplingArgs, n: int = 1) -> list[Completion]:
        """Samples `n` completions of the chat `messages` (rendered by the server's chat template)."""
        body = {**request_body(self.model, sampling, n), "messages": messages}
        return await self._post("/chat/completions", body)

    async def chat_tokens(
        self, prompt_ids: list[int], sampling: SamplingArgs, n: int = 1, messages: list[dict] | None = None
    ) -> list[Completion]:
        """Samples `n` completions continuing exactly `prompt_ids` (`messages` only travel along for logging)."""
        body = {**request_body(self.model, sampling, n), "messages": messages or [], "tokens": list(prompt_ids)}
        return await self._post("/chat/completions/tokens", body)

    async def close(self) -> None:
        await self._http.aclose()

    async def _attempt(self, route: str, body: dict) -> list[Completion] | str:
        """One request to the next server: its completions, or a retryable failure's description (4xx raises)."""
        url = self.base_urls[next(self._next_url)] + route
        try:
            response = await self._http.post(url, json=body)
        except httpx.TransportError as e:
            return f"{url}: {type(e).__name__}: {e}"
        if response.status_code < 400:
            return parse_response(response.json(), url)
        if response.status_code < 500:
            raise SamplingError(f"{url} refused the request: HTTP {response.status_code}: {response.text[:500]}")
        return f"{url}: HTTP {response.status_code}: {response.text[:200]}"

    async def _post(self, route: str, body: dict) -> list[Completion]:
        failures: list[str] = []
        for attempt in range(self.max_retries + 1):
            result = await self._attempt(route, body)
            if not isinstance(result, str):
                return result
            failures.append(result)
            if attempt < self.max_retries:
                await asyncio.sleep(self.retry_backoff * 2**attempt)
        tried = ", ".join(dict.fromkeys(f.split(": ", 1)[0] for f in failures))
        raise SamplingError(f"inference server(s) {tried} failed {len(failures)} attempts; last: {failures[-1]}")

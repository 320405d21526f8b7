"""`InferenceClient`: every request of the orchestrator, the environments and `eval` to the inference server(s).

Sampling requests go round-robin over `base_urls` (a retry goes to the next server); control requests
(`/update_weights`, `/reload_weights`) go to every server. All of them retry under the one `RetryPolicy`; HTTP 4xx
and malformed answers fail at once. With `remember_unreachable`, the first request that spends its budget marks
the servers down: every later request fails at once with the same error (the orchestrator stops the run on it).
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import httpx

from prime_rl.client.errors import InferenceError, InferenceUnreachable
from prime_rl.client.retry import Failure, RetryPolicy, retry
from prime_rl.client.wire import Completion, parse_completions, parse_logprobs, request_body, root_url

if TYPE_CHECKING:
    from prime_rl.utils.config.sections import SamplingConfig

T = TypeVar("T")
HEALTH_POLL_SECONDS = 0.5


class InferenceClient:
    """Sampling (`chat`, `chat_tokens`), scoring (`score`), control (`update_weights`, `reload_weights`) and
    `health`/`wait_healthy`, `models` of the OpenAI-compatible servers at `base_urls` (ending in `/v1`); a `transport`
    (e.g. `httpx.ASGITransport(app)`) replaces the network, as in the in-process reference loop."""

    def __init__(
        self,
        base_urls: list[str],
        model: str,
        api_key: str | None = None,
        timeout: float = 600.0,
        retry_policy: RetryPolicy | None = None,
        remember_unreachable: bool = False,
        transport: httpx.AsyncBaseTransport | None = None,
    ):
        if not base_urls:
            raise ValueError("InferenceClient needs at least one base URL")
        self.base_urls = [u.rstrip("/") for u in base_urls]
        self.root_urls = [root_url(u) for u in self.base_urls]
        self.model = model
        self.retry_policy = retry_policy or RetryPolicy(deadline=120.0)
        self.remember_unreachable = remember_unreachable
        self.unreachable: InferenceUnreachable | None = None
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        limits = httpx.Limits(max_connections=None, max_keepalive_connections=64)
        self._http = httpx.AsyncClient(headers=headers, timeout=timeout, limits=limits, transport=transport)
        self._next = itertools.cycle(range(len(self.base_urls)))

    # ---------------------------------------------------------------- sampling

    async def chat(
        self,
        messages: list[dict],
        sampling: SamplingConfig,
        n: int = 1,
        seed: int | None = None,
        tools: list[dict] | None = None,
    ) -> list[Completion]:
        """Samples `n` completions of the chat `messages` (rendered by the server's chat template, with the OpenAI
        `tools` when given: the replies' tool calls come back in `Completion.tool_calls`)."""
        body = {**request_body(self.model, sampling, n, seed), "messages": messages}
        if tools:
            body["tools"] = tools
        return await self._sample("/chat/completions", body)

    async def chat_tokens(
        self,
        prompt_ids: list[int],
        sampling: SamplingConfig,
        n: int = 1,
        seed: int | None = None,
        messages: list[dict] | None = None,
        tools: list[dict] | None = None,
    ) -> list[Completion]:
        """Samples `n` completions continuing exactly `prompt_ids` (`messages` only travel along for logging; `tools`,
        already rendered in the prompt, only make the server parse tool calls)."""
        body = {**request_body(self.model, sampling, n, seed), "messages": messages or [], "tokens": list(prompt_ids)}
        if tools:
            body["tools"] = tools
        return await self._sample("/chat/completions/tokens", body)

    async def score(self, tokens: list[int], start: int, temperature: float = 1.0) -> list[float]:
        """Logprobs of `tokens[start:]`, each given its prefix, under the served weights (`POST /v1/logprobs`)."""
        body = {"model": self.model, "tokens": list(tokens), "start": start, "temperature": temperature}

        async def attempt() -> list[float] | Failure:
            url = self.base_urls[next(self._next)] + "/logprobs"
            data = await self._json("POST", url, body)
            return data if isinstance(data, Failure) else parse_logprobs(data, len(tokens) - start, url)

        return await self._retried(attempt)

    async def models(self) -> list[str]:
        """The model ids served (`GET /v1/models` of the next server)."""
        data = await self._retried(lambda: self._json("GET", self.base_urls[next(self._next)] + "/models"))
        return [card["id"] for card in data["data"]]

    # ---------------------------------------------------------------- control

    async def update_weights(self, weight_dir: Path, step: int | None = None) -> int:
        """Every server loads the safetensors of `weight_dir` (policy `step`; None: the server derives it from the
        directory name); returns the policy step the first server reports."""
        body: dict[str, Any] = {"weight_dir": str(Path(weight_dir).resolve())}
        if step is not None:
            body["step"] = step
        answers = await self._post_all("/update_weights", body)
        return int(answers[0].get("policy_step", step))

    async def reload_weights(self) -> int:
        """Every server restores the base model (policy 0)."""
        answers = await self._post_all("/reload_weights")
        return int(answers[0].get("policy_step", 0))

    async def health(self) -> list[dict]:
        """`GET /health` of every server, one attempt each (unreachable or 5xx: `InferenceUnreachable`)."""
        once = RetryPolicy(retries=0)
        return list(
            await asyncio.gather(*(retry(once, lambda u=u: self._json("GET", f"{u}/health")) for u in self.root_urls))
        )

    async def wait_healthy(self, timeout: float, alive: Callable[[], bool] = lambda: True) -> bool:
        """Polls every server's `/health` until it answers 200, for at most `timeout` seconds; stops early and returns
        False once `alive()` is False (a server process the caller started has died)."""
        poll = RetryPolicy(
            deadline=timeout,
            first_backoff=HEALTH_POLL_SECONDS,
            max_backoff=HEALTH_POLL_SECONDS,
            key="client.health_timeout",
        )

        async def wait(url: str) -> None:
            try:
                await retry(poll, lambda: self._json("GET", f"{url}/health"), give_up=lambda: not alive())
            except InferenceUnreachable as e:
                if alive():
                    raise InferenceUnreachable(f"inference server {url} not healthy after {timeout:g}s: {e}") from None

        await asyncio.gather(*(wait(url) for url in self.root_urls))
        return alive()

    # ---------------------------------------------------------------- lifecycle

    def raise_if_unreachable(self) -> None:
        if self.unreachable is not None:
            raise self.unreachable

    async def close(self) -> None:
        await self._http.aclose()

    # ---------------------------------------------------------------- one attempt, and the retries around it

    async def _send(self, method: str, url: str, body: dict | None = None) -> httpx.Response | Failure:
        """One request: the response, or a retryable `Failure`; HTTP 4xx raises `InferenceError`."""
        try:
            response = await self._http.request(method, url, json=body)
        except httpx.TransportError as e:
            return Failure(url, f"{type(e).__name__}: {e}")
        if response.status_code >= 500:
            return Failure(url, f"HTTP {response.status_code}: {response.text[:200]}")
        if response.status_code >= 400:
            raise InferenceError(f"{url} refused the request: HTTP {response.status_code}: {response.text[:500]}")
        return response

    async def _json(self, method: str, url: str, body: dict | None = None) -> dict | Failure:
        response = await self._send(method, url, body)
        if isinstance(response, Failure):
            return response
        try:
            return response.json()
        except ValueError as e:
            raise InferenceError(f"malformed response from {url}: {e}") from None

    async def _sample(self, route: str, body: dict) -> list[Completion]:
        async def attempt() -> list[Completion] | Failure:
            url = self.base_urls[next(self._next)] + route
            response = await self._send("POST", url, body)
            return response if isinstance(response, Failure) else parse_completions(response, url)

        return await self._retried(attempt)

    async def _post_all(self, route: str, body: dict | None = None) -> list[dict]:
        posts = (self._retried(lambda u=u: self._json("POST", u + route, body)) for u in self.root_urls)
        return list(await asyncio.gather(*posts))

    async def _retried(self, attempt: Callable[[], Awaitable[T | Failure]], policy: RetryPolicy | None = None) -> T:
        """`retry` under the client's policy; with `remember_unreachable`, the first exhausted budget is final."""
        self.raise_if_unreachable()
        try:
            return await retry(policy or self.retry_policy, attempt, give_up=lambda: self.unreachable is not None)
        except InferenceUnreachable as e:
            if not self.remember_unreachable:
                raise
            self.unreachable = self.unreachable or e
            raise self.unreachable from None

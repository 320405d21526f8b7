"""The orchestrator's sampling client: retries an unreachable or failing server for a time budget, then stops the run.

Environments turn any exception of a rollout into an errored rollout (DESIGN.md section 7). A server that stays
down is not a rollout's fault, so when the budget is spent the client remembers the failure (`unreachable`), fails
every later request at once, and the orchestrator raises it after the step's generation, naming the server(s).
"""

from __future__ import annotations

import asyncio
import itertools
import time

from prime_rl.environments.client import Completion, SamplingClient, SamplingError

MAX_BACKOFF = 10.0


class InferenceUnreachable(SamplingError):
    """Every attempt of a request failed (connection error, timeout or 5xx) for longer than the retry budget."""


def backoff(attempt: int, first: float = 0.5, cap: float = MAX_BACKOFF) -> float:
    """Seconds to wait before retry `attempt` (0-based): `first * 2**attempt`, at most `cap`."""
    return min(first * 2**attempt, cap)


class RetryingClient(SamplingClient):
    """`SamplingClient` whose retries of a failing request are bounded by `retry_timeout` seconds, not a count."""

    def __init__(
        self,
        base_urls: list[str],
        model: str,
        api_key: str | None = None,
        timeout: float = 600,
        retry_timeout: float = 120.0,
        first_backoff: float = 0.5,
    ):
        super().__init__(base_urls, model, api_key, timeout, max_retries=0)
        self.retry_timeout = retry_timeout
        self.first_backoff = first_backoff
        self.unreachable: InferenceUnreachable | None = None

    def raise_if_unreachable(self) -> None:
        if self.unreachable is not None:
            raise self.unreachable

    async def _post(self, route: str, body: dict) -> list[Completion]:
        self.raise_if_unreachable()
        start = time.monotonic()
        failures: list[str] = []
        for attempt in itertools.count():
            result = await self._attempt(route, body)
            if not isinstance(result, str):
                return result
            failures.append(result)
            wait = backoff(attempt, self.first_backoff)
            if time.monotonic() - start + wait > self.retry_timeout or self.unreachable is not None:
                break
            await asyncio.sleep(wait)
        if self.unreachable is None:
            servers = ", ".join(dict.fromkeys(f.split(": ", 1)[0] for f in failures))
            self.unreachable = InferenceUnreachable(
                f"inference server(s) {servers} unreachable: {len(failures)} attempts over "
                f"{time.monotonic() - start:.0f}s (client.retry_timeout = {self.retry_timeout:g}); last: {failures[-1]}"
            )
        raise self.unreachable

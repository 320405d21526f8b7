"""The one retry policy of every request to the inference server(s): an attempt that failed with a connection error,
a timeout or HTTP 5xx is tried again after a doubling backoff until a retry count or a deadline is spent."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from prime_rl.client.errors import InferenceUnreachable

T = TypeVar("T")


@dataclass(frozen=True)
class Failure:
    """A retryable failure of one attempt."""

    url: str
    reason: str

    def __str__(self) -> str:
        return f"{self.url}: {self.reason}"


@dataclass(frozen=True)
class RetryPolicy:
    """At most `retries` retries and/or retries until `deadline` seconds after the first attempt (whichever is spent
    first); the wait before retry `a` (0-based) is `min(first_backoff * 2**a, max_backoff)`."""

    retries: int | None = None
    deadline: float | None = None
    first_backoff: float = 0.5
    max_backoff: float = 10.0
    key: str | None = None
    """The config key that set the budget (e.g. `client.retry_timeout`), named in the error."""

    def __post_init__(self) -> None:
        if self.retries is None and self.deadline is None:
            raise ValueError("RetryPolicy needs `retries` or `deadline` (or both)")

    def backoff(self, attempt: int) -> float:
        # The exponent is capped: a health poll retries every 0.5 s for many minutes, and 2.0**1024 overflows.
        return min(self.first_backoff * 2.0 ** min(attempt, 60), self.max_backoff)

    def wait(self, attempt: int, elapsed: float) -> float | None:
        """Seconds to wait before retrying failed attempt `attempt` (0-based), shortened so that the last retry starts
        at the deadline; None when the budget is spent."""
        if self.retries is not None and attempt >= self.retries:
            return None
        if self.deadline is None:
            return self.backoff(attempt)
        remaining = self.deadline - elapsed
        return min(self.backoff(attempt), remaining) if remaining > 0 else None

    def describe(self) -> str:
        """The budget as the config spells it: `client.retry_timeout = 120`, `client.retries = 3`, or `key = ...`."""
        budget = {"client.retries": self.retries, "client.retry_timeout": self.deadline}
        budget = {key: value for key, value in budget.items() if value is not None}
        if self.key is not None and len(budget) == 1:
            budget = {self.key: next(iter(budget.values()))}
        return ", ".join(f"{key} = {value:g}" for key, value in budget.items())


async def retry(
    policy: RetryPolicy, attempt: Callable[[], Awaitable[T | Failure]], give_up: Callable[[], bool] = lambda: False
) -> T:
    """`attempt()` until it returns something other than a `Failure`, within `policy` (or until `give_up()`);
    then raises `InferenceUnreachable` naming every URL tried, the attempts, the budget and the last failure."""
    start = time.monotonic()
    failures: list[Failure] = []
    for n in itertools.count():
        result = await attempt()
        if not isinstance(result, Failure):
            return result
        failures.append(result)
        wait = policy.wait(n, time.monotonic() - start)
        if wait is None or give_up():
            break
        await asyncio.sleep(wait)
    urls = ", ".join(dict.fromkeys(f.url for f in failures))
    raise InferenceUnreachable(
        f"inference server(s) {urls} unreachable: {len(failures)} attempts over {time.monotonic() - start:.0f}s "
        f"({policy.describe()}); last: {failures[-1]}"
    )

"""Async bookkeeping: which policy the batch of step N may be generated with, and loading newer policies.

The trainer's step N consumes `rollouts/step_N` and writes `broadcasts/step_{N+1}`. The orchestrator may generate
the batch of step N with any policy K >= N - max_async_level; policy 0 is the base model the server starts with.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from prime_rl.run_dir import RunDir
from prime_rl.utils.logger import get_logger


def required_policy(step: int, max_async_level: int) -> int:
    """The oldest policy allowed to generate the batch of `step`."""
    return max(step - max_async_level, 0)


def next_policy(needed: int, loaded: int, latest_stable: int | None) -> int | None:
    """The policy to load so that one >= `needed` serves (the newest stable one), or None to keep `loaded`.

    Raises ValueError when no policy >= `needed` is available yet; callers wait and ask again.
    """
    newest = max(loaded, latest_stable or 0)
    if newest < needed:
        raise ValueError(f"needs policy >= {needed}, newest available is {newest}")
    return newest if newest > loaded else None


UpdateFn = Callable[[Path, int], Awaitable[None]]
"""`update(weight_dir, step)`: loads the policy of `step` from `weight_dir` into every inference server."""


class PolicyScheduler:
    """Tracks the loaded policy and, before each step, loads the newest stable broadcast (waiting if too old)."""

    def __init__(
        self,
        output_dir: Path,
        max_async_level: int,
        update_fn: UpdateFn,
        loaded: int = 0,
        poll_interval: float = 0.1,
        timeout: float = 3600.0,
    ):
        self.run = RunDir(output_dir)
        self.max_async_level = max_async_level
        self.update_fn = update_fn
        self.loaded = loaded
        self.poll_interval = poll_interval
        self.timeout = timeout

    async def prepare(self, step: int) -> float:
        """Makes sure the loaded policy may generate `step`; returns the seconds spent waiting for weights."""
        return await self.ensure(required_policy(step, self.max_async_level), f"step {step}")

    async def ensure(self, needed: int, purpose: str) -> float:
        """Loads the newest stable policy once one >= `needed` exists (unless one is loaded); returns the wait."""
        start = time.monotonic()
        while True:
            try:
                target = next_policy(needed, self.loaded, self.run.latest_broadcast())
                break
            except ValueError:
                if time.monotonic() - start > self.timeout:
                    raise TimeoutError(
                        f"{purpose} needs policy {needed} but {self.run.broadcast(needed)}/STABLE "
                        f"did not appear within {self.timeout:.0f}s (is the trainer running?)"
                    ) from None
                await asyncio.sleep(self.poll_interval)
        waited = time.monotonic() - start
        if target is not None:
            get_logger("orchestrator").info("loading policy %d for %s", target, purpose)
            await self.update_fn(self.run.broadcast(target), target)
            self.loaded = target
        return waited

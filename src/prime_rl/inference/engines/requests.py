"""What the engine thread keeps per request and per sampled choice, and how results cross back to the caller's loop."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import torch

from prime_rl.inference.engines.base import CompletionChoice, GenerationResult, SamplingParams, TokenCallback


@dataclass(eq=False)
class Request:
    """One `generate` call: its prompt, settings, the future its caller awaits and (once admitted) its sequences."""

    prompt_ids: list[int]
    params: SamplingParams
    max_new: int
    future: asyncio.Future
    loop: asyncio.AbstractEventLoop
    seed: int
    on_token: TokenCallback | None = None
    sequences: list[Sequence] = field(default_factory=list)
    policy_step: int = 0
    solo: bool = False
    """Runs alone in the batch: set after a failed engine step, so a failure is attributed to one request."""

    @property
    def cancelled(self) -> bool:
        return self.future.cancelled()

    @property
    def done(self) -> bool:
        return all(s.finish_reason for s in self.sequences)

    def new_sequences(self, length: int) -> list[Sequence]:
        """The `n` choices, each with its own generator derived from the request's seed."""
        seeds = torch.randint(0, 2**62, (self.params.n,), generator=torch.Generator().manual_seed(self.seed % 2**63))
        top = self.params.top_logprobs
        return [
            Sequence(self, i, torch.Generator().manual_seed(int(s)), length, top=[] if top else None)
            for i, s in enumerate(seeds)
        ]

    def succeed(self) -> None:
        """Answers the caller with every choice (called from the engine thread)."""
        choices = [s.to_choice() for s in self.sequences]
        result = GenerationResult(prompt_ids=self.prompt_ids, choices=choices, policy_step=self.policy_step)
        self.loop.call_soon_threadsafe(resolve, self.future, result, None)

    def fail(self, error: Exception) -> None:
        """Answers the caller with `error` (called from the engine thread)."""
        self.loop.call_soon_threadsafe(resolve, self.future, None, error)


@dataclass(eq=False)
class Sequence:
    """One choice of a request while it is generated; it owns one slot of the KV cache."""

    request: Request
    index: int
    generator: torch.Generator
    length: int
    """Tokens held in the KV cache."""
    token_ids: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    top: list[list[tuple[int, float]]] | None = None
    finish_reason: str | None = None
    text: str | None = None

    def to_choice(self) -> CompletionChoice:
        return CompletionChoice(
            token_ids_T=self.token_ids,
            logprobs_T=self.logprobs,
            top_logprobs_T=self.top,
            text=self.text or "",
            finish_reason="stop" if self.finish_reason == "stop" else "length",
        )


def dispatch(calls: list) -> None:
    """Runs the streaming callbacks of one engine step on their event loop."""
    for fn, args in calls:
        fn(*args)


def resolve(future: asyncio.Future, result: object, error: Exception | None) -> None:
    """Settles `future` once (runs on its event loop)."""
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)

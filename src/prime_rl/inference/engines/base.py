"""The engine interface the HTTP server talks to, and the plain data it exchanges (no torch here).

An engine turns prompt token ids + sampling parameters into completions, batching concurrent requests itself, and
swaps weights in place. `hf.py` implements it on transformers; a vLLM engine can slot in behind the same methods.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal


class EngineError(Exception):
    """A request the engine cannot serve; `param` names the offending request field, `status` the HTTP code."""

    def __init__(self, message: str, param: str | None = None, status: int = 400):
        super().__init__(message)
        self.message = message
        self.param = param
        self.status = status


@dataclass
class SamplingParams:
    """Per-request sampling settings (already validated by the server)."""

    n: int = 1
    temperature: float = 1.0
    """0 means greedy."""
    top_p: float = 1.0
    top_k: int = 0
    """0 means off (the request's -1 arrives here as 0: `ChatCompletionRequest.sampling_params`)."""
    min_p: float = 0.0
    max_tokens: int | None = None
    """None means up to the end of the context."""
    min_tokens: int = 0
    stop: list[str] = field(default_factory=list)
    seed: int | None = None
    logprobs: bool = False
    top_logprobs: int = 0


@dataclass
class CompletionChoice:
    """One sampled completion. `token_ids_T` includes the stop token (EOS) when generation ended on it."""

    token_ids_T: list[int]
    logprobs_T: list[float]
    top_logprobs_T: list[list[tuple[int, float]]] | None
    text: str
    finish_reason: Literal["stop", "length"]


@dataclass
class GenerationResult:
    """All `n` choices of one request and the weights step (policy) that generated every one of them."""

    prompt_ids: list[int]
    choices: list[CompletionChoice]
    policy_step: int


def check_request(
    prompt_ids: list[int], params: SamplingParams, max_model_len: int, vocab_size: int, max_batch_size: int
) -> int:
    """The limits every engine enforces (see `Engine.check`); returns how many tokens the request may generate."""
    if not prompt_ids:
        raise EngineError("the prompt is empty", "messages")
    room = max_model_len - len(prompt_ids)
    if room <= 0:
        raise EngineError(
            f"the prompt has {len(prompt_ids)} tokens, the model's context is {max_model_len} tokens", "messages"
        )
    if not 1 <= params.n <= max_batch_size:
        raise EngineError(f"n={params.n} is not in [1, max_batch_size={max_batch_size}]", "n")
    for name in ("max_tokens", "min_tokens"):
        value = getattr(params, name)
        if value is not None and value > max_model_len:
            raise EngineError(f"`{name}` ({value}) exceeds the model's context of {max_model_len} tokens", name)
    if params.top_k > vocab_size:
        raise EngineError(f"`top_k` ({params.top_k}) exceeds the vocabulary size {vocab_size}", "top_k")
    if any(t < 0 or t >= vocab_size for t in prompt_ids):
        raise EngineError(f"prompt token ids must be in [0, {vocab_size})", "tokens")
    return room if params.max_tokens is None else min(params.max_tokens, room)


@dataclass
class ScoreResult:
    """Logprobs of given tokens under the served weights (teacher forcing, no sampling)."""

    logprobs_T: list[float]
    """`log p(tokens[t] | tokens[:t])` for t = start, ..., len(tokens) - 1."""
    policy_step: int


def check_score(tokens: list[int], start: int, max_model_len: int, vocab_size: int) -> None:
    """The limits of a scoring request: a prefix of at least one token, the whole sequence within the context."""
    if not 1 <= start < len(tokens):
        raise EngineError(f"`start` ({start}) must be in [1, {len(tokens)}) for {len(tokens)} tokens", "start")
    if len(tokens) > max_model_len:
        raise EngineError(f"{len(tokens)} tokens exceed the model's context of {max_model_len} tokens", "tokens")
    if any(t < 0 or t >= vocab_size for t in tokens):
        raise EngineError(f"token ids must be in [0, {vocab_size})", "tokens")


TokenCallback = Callable[[int, int, float, list[tuple[int, float]], bool], None]
"""Called on the caller's event loop per sampled token: (choice index, token id, logprob, top logprobs, is last)."""


class Engine(ABC):
    """Serves one model; thread-safe to call from the server's event loop."""

    max_model_len: int
    policy_step: int

    @abstractmethod
    def start(self) -> None:
        """Starts the engine loop (loading the model first if the constructor did not)."""

    @abstractmethod
    def shutdown(self) -> None:
        """Stops the engine loop; pending requests fail."""

    @abstractmethod
    def check(self, prompt_ids: list[int], params: SamplingParams) -> int:
        """Raises EngineError if the request cannot be served; returns how many tokens it may generate."""

    @abstractmethod
    async def generate(
        self, prompt_ids: list[int], params: SamplingParams, on_token: TokenCallback | None = None
    ) -> GenerationResult:
        """Samples `params.n` completions of `prompt_ids` (see `check`); `on_token` streams tokens as they come.

        Streamed requests in flight when weights change fail with a 409 EngineError (sent tokens cannot be undone).
        """

    def failure(self) -> str | None:
        """Why the engine can no longer serve any request (e.g. a process it runs on died), else None; the server
        exits on it instead of answering every request with an error."""
        return None

    async def score(self, tokens: list[int], start: int, temperature: float) -> ScoreResult:
        """Logprobs of `tokens[start:]`, each given its prefix, from `log_softmax(logits / temperature)`."""
        raise EngineError(f"{type(self).__name__} cannot score token ids", status=501)

    @abstractmethod
    async def update_weights(self, weight_dir: Path, step: int) -> None:
        """Loads `*.safetensors` from `weight_dir` in place; generations in flight restart on the new weights."""

    @abstractmethod
    async def reload_weights(self) -> None:
        """Restores the weights the engine started with (policy step 0)."""

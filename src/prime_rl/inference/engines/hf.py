"""Continuous-batching engine on a transformers causal LM (any device), driven by one engine thread.

Requests queue up; between decode steps the engine thread prefills waiting prompts (batched, one prefill shared by
the `n` choices of a request), adds them to the running batch, and drops sequences that finished. Keys and values
live in a `SlotKVCache`, so the prompt is never recomputed. Weight updates run on the same thread between steps;
sequences in flight are then restarted from their prompt on the new weights, so no completion mixes two policies.
Pieces: `scheduler.py` (queue and batch), `model_runner.py` (forwards and cache), `sampling.py`, `stopping.py`,
`weights.py` (reading a weight directory), `requests.py` (per-request state).
"""

from __future__ import annotations

import asyncio
import random
import threading
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import torch
from jaxtyping import Float
from torch import Tensor

from prime_rl.inference.engines.base import (
    Engine,
    EngineError,
    GenerationResult,
    SamplingParams,
    ScoreResult,
    TokenCallback,
    check_request,
    check_score,
)
from prime_rl.inference.engines.model_runner import ModelRunner, load_model_runner
from prime_rl.inference.engines.requests import Request, Sequence, dispatch, resolve
from prime_rl.inference.engines.sampling import sample, sampling_batch
from prime_rl.inference.engines.scheduler import Scheduler
from prime_rl.inference.engines.stopping import check_finished
from prime_rl.inference.engines.weights import check_weight_dir, read_adapter_dir
from prime_rl.utils.logger import get_logger
from prime_rl.utils.memory import release_free_memory
from prime_rl.utils.threads import pin_current_thread
from prime_rl.weights.adapter import adapter_pairs, is_adapter_dir, merge_adapter
from prime_rl.weights.state import unique_state_dict

T = TypeVar("T")


class HFEngine(Engine):
    """Serves the model of a `ModelRunner`; `start` launches the engine thread (see `setup_hf_engine`)."""

    def __init__(self, runner: ModelRunner, max_batch_size: int = 64, seed: int = 0, pin_threads: bool = False):
        self.runner = runner
        self.pin_threads = pin_threads
        """Pin the engine thread to its own cores when it starts (`InferenceConfig.pin_threads`)."""
        self.tokenizer = runner.tokenizer
        self.model_path = runner.model_path
        self.max_model_len = runner.max_model_len
        self.stop_ids = runner.stop_ids
        self.max_batch_size = max_batch_size
        self.policy_step = 0
        self.scheduler = Scheduler(max_batch_size, runner.cache)
        self.logger = get_logger("inference.engine")
        self._seed_rng = random.Random(seed)
        self._commands: deque[Callable[[], None]] = deque()
        """Work for the engine thread between steps (weight swaps); guarded by `scheduler.cond`."""
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="inference-engine", daemon=True)
        self.stats = {"prefill_forwards": 0, "prefill_tokens": 0, "decode_steps": 0, "restarted_requests": 0}
        """Counters for tests and logs: prompts are prefilled once per request, not per choice or token."""

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        self._thread.start()
        self.logger.info(
            f"engine ready: {self.model_path} on {self.runner.device} ({self.runner.cache.dtype}), "
            f"max_model_len={self.max_model_len}"
        )

    def shutdown(self) -> None:
        with self.scheduler.cond:
            self._stopping = True
            self.scheduler.cond.notify_all()
        if self._thread.is_alive():
            self._thread.join(timeout=30)

    # ------------------------------------------------------------------ public API (event loop side)

    def check(self, prompt_ids: list[int], params: SamplingParams) -> int:
        return check_request(prompt_ids, params, self.max_model_len, self.runner.vocab_size, self.max_batch_size)

    async def generate(
        self, prompt_ids: list[int], params: SamplingParams, on_token: TokenCallback | None = None
    ) -> GenerationResult:
        max_new = self.check(prompt_ids, params)
        loop = asyncio.get_running_loop()
        seed = params.seed if params.seed is not None else self._seed_rng.getrandbits(63)
        request = Request(list(prompt_ids), params, max_new, loop.create_future(), loop, seed, on_token)
        self.scheduler.submit(request)
        return await request.future

    async def score(self, tokens: list[int], start: int, temperature: float) -> ScoreResult:
        """One forward on the engine thread between two decode steps, so it never overlaps a weight swap."""
        check_score(tokens, start, self.max_model_len, self.runner.vocab_size)

        def forward() -> ScoreResult:
            return ScoreResult(self.runner.score(tokens, start, temperature).tolist(), self.policy_step)

        return await self._run_command(forward)

    async def update_weights(self, weight_dir: Path, step: int) -> None:
        """Full weights, or a LoRA adapter (`adapter_config.json` present) merged into the base weights. Full weights
        are checked tensor by tensor first, then copied tensor by tensor, so the update holds one tensor extra."""
        if is_adapter_dir(weight_dir):
            adapter, scale = await asyncio.to_thread(read_adapter_dir, weight_dir)
            await self._run_command(lambda: self._apply_adapter(adapter, scale, step))
            return
        checked = await asyncio.to_thread(check_weight_dir, weight_dir, self.runner.model)
        try:
            await self._run_command(lambda: self._apply(lambda: self.runner.load_checked(checked), step))
        finally:
            checked.close()
        release_free_memory()  # the read tensors' pages, else kept by the allocator for good

    async def load_weights(self, tensors: dict[str, Tensor], step: int) -> None:
        """Copies canonical-name tensors into the served model in place, between two engine steps, as policy `step`
        (the in-process reference loop hands the trainer's tensors)."""
        await self._run_command(lambda: self._apply(lambda: self.runner.load_weights(tensors), step))

    async def reload_weights(self) -> None:
        await self._run_command(self._reload)

    async def _run_command(self, fn: Callable[[], T]) -> T:
        """Runs `fn` on the engine thread between two steps; returns its result (or raises its exception)."""
        loop = asyncio.get_running_loop()
        done = loop.create_future()

        def command() -> None:
            try:
                result = fn()
            except Exception as e:
                loop.call_soon_threadsafe(resolve, done, None, e)
                return
            loop.call_soon_threadsafe(resolve, done, result, None)

        with self.scheduler.cond:
            self._commands.append(command)
            self.scheduler.cond.notify_all()
        return await done

    # ------------------------------------------------------------------ engine thread

    def _run(self) -> None:
        if self.pin_threads:
            cores = pin_current_thread(torch.get_num_threads())
            self.logger.info(f"engine thread pinned to core(s) {sorted(cores)}")
        cond = self.scheduler.cond
        with torch.inference_mode():
            while True:
                with cond:
                    while not (self._stopping or self._commands or self.scheduler.pending or self.scheduler.active):
                        cond.wait()
                    if self._stopping:
                        break
                    commands = list(self._commands)
                    self._commands.clear()
                for command in commands:
                    command()
                try:
                    self._step()
                except Exception as e:
                    self._isolate(e)
        with cond:
            pending = list(self.scheduler.pending)
            self.scheduler.pending.clear()
        for request in self.scheduler.clear() + pending:
            request.fail(EngineError("the engine shut down", status=503))

    def _step(self) -> None:
        self.scheduler.drop_cancelled()
        if not self.scheduler.active:
            self.scheduler.wait_for_burst()
        self._admit()
        if self.scheduler.active:
            self._decode()
        if self.scheduler.idle and self.runner.cache.slots:
            self.runner.cache.release()
            release_free_memory()  # the cache's pages (glibc keeps freed blocks of its size)

    def _isolate(self, error: Exception) -> None:
        """After a failed step: if one request was involved it fails; several are retried one at a time (`solo`), so
        only the request that causes the failure fails. A stream that already sent tokens cannot restart: it ends."""
        requests = self.scheduler.clear()
        self.logger.exception(f"engine step failed on {len(requests)} request(s)", exc_info=error)
        if len(requests) == 1:
            message = f"the engine failed on this request: {type(error).__name__}: {error}"
            requests[0].fail(EngineError(message, status=500))
            return
        streaming = [r for r in requests if r.on_token is not None and any(s.token_ids for s in r.sequences)]
        for request in streaming:
            request.fail(EngineError("an engine step failed during this stream; retry", status=503))
        retry = [r for r in requests if r not in streaming]
        for request in retry:
            request.solo = True
        self.scheduler.requeue(retry)

    def _reload(self) -> None:
        if self.runner.start.changed:
            self._apply(self.runner.restore_start, 0)
        self.policy_step = 0

    def _apply_adapter(self, adapter: dict[str, Tensor], scale: float, step: int) -> None:
        """Serves base + scale * B @ A in the adapted weights (always from the base, never on top of an earlier
        policy), the others at their base values."""
        try:
            served = set(unique_state_dict(self.runner.model))
            base = self.runner.start.values(n for n in adapter_pairs(adapter) if n in served)
            merged = merge_adapter(base, adapter, scale)
        except ValueError as e:
            raise EngineError(str(e), "weight_dir") from None

        def write() -> None:
            self.runner.restore_start(self.runner.start.changed - set(merged))
            self.runner.load_weights(merged)

        self._apply(write, step)

    def _apply(self, write: Callable[[], object], step: int) -> None:
        """Changes the weights in place (`write`) and restarts everything in flight, so no completion mixes two
        policies."""
        write()
        # A stream cannot take back tokens it already sent, so streamed requests end with an error instead.
        streamed, restarted = self.scheduler.requeue_in_flight()
        for request in streamed:
            request.fail(
                EngineError(f"weights were updated to policy step {step} during this stream; retry", status=409)
            )
        self.stats["restarted_requests"] += len(restarted)
        self.policy_step = step
        self.logger.info(f"weights of policy step {step} loaded ({len(restarted)} requests restarted)")

    def _admit(self) -> None:
        requests = self.scheduler.take_admissible()
        if not requests:
            return
        first = len(self.scheduler.active)
        prompts = [r.prompt_ids for r in requests]
        self.stats["prefill_forwards"] += 1
        self.stats["prefill_tokens"] += sum(len(p) for p in prompts)
        for request in requests:
            request.policy_step = self.policy_step
            request.sequences = request.new_sequences(len(request.prompt_ids))
        # Slot order of `prefill`: choice 0 of every request, then the other choices request by request.
        ordered = [r.sequences[0] for r in requests] + [s for r in requests for s in r.sequences[1:]]
        self.scheduler.add(requests, ordered)
        logits = self.runner.prefill(prompts, first, [r.params.n for r in requests], self.scheduler.longest_possible())
        self._sample_and_advance(logits, ordered)

    def _decode(self) -> None:
        seqs = self.scheduler.active
        self.stats["decode_steps"] += 1
        logits = self.runner.decode(
            [s.token_ids[-1] for s in seqs], [s.length for s in seqs], self.scheduler.longest_possible()
        )
        for seq in seqs:
            seq.length += 1
        self._sample_and_advance(logits, seqs)

    def _sample_and_advance(self, logits: Float[Tensor, "rows vocab"], seqs: list[Sequence]) -> None:
        """Samples the next token of `seqs` (the last rows of the batch), records it and retires finished ones."""
        uniform = [float(torch.rand((), generator=s.generator)) for s in seqs]
        params = [s.request.params for s in seqs]
        batch = sampling_batch(params, [len(s.token_ids) for s in seqs], uniform, self.runner.device)
        out = sample(logits, batch, self.runner.stop_tensor)
        tokens, logprobs = out.tokens.tolist(), out.logprobs.tolist()
        top_ids = out.top_ids.tolist() if out.top_ids is not None else None
        top_lps = out.top_logprobs.tolist() if out.top_logprobs is not None else None
        streamed: dict[asyncio.AbstractEventLoop, list] = {}
        for i, seq in enumerate(seqs):
            seq.token_ids.append(tokens[i])
            seq.logprobs.append(logprobs[i])
            if seq.top is not None and top_ids is not None:
                k = seq.request.params.top_logprobs
                seq.top.append(list(zip(top_ids[i][:k], top_lps[i][:k], strict=True)))
            check_finished(seq, self.tokenizer, self.runner.stop_set)
            if seq.request.on_token is not None:
                top = seq.top[-1] if seq.top else []
                event = (seq.index, tokens[i], logprobs[i], top, seq.finish_reason is not None)
                streamed.setdefault(seq.request.loop, []).append((seq.request.on_token, event))
        # One wake-up of each event loop per step, not one per streamed token.
        for loop, calls in streamed.items():
            loop.call_soon_threadsafe(dispatch, calls)
        if any(s.finish_reason for s in seqs):
            for request in self.scheduler.retire():
                request.succeed()


def setup_hf_engine(
    model_path: str,
    dtype: str = "auto",
    device: str = "auto",
    max_model_len: int | None = None,
    max_batch_size: int = 64,
    num_threads: int | None = None,
    seed: int = 0,
    pin_threads: bool = False,
) -> HFEngine:
    """Loads the model and builds the engine (not started)."""
    runner = load_model_runner(model_path, dtype, device, max_model_len, num_threads)
    return HFEngine(runner, max_batch_size=max_batch_size, seed=seed, pin_threads=pin_threads)

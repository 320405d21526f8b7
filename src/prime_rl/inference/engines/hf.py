"""Continuous-batching engine on a transformers causal LM (any device), driven by one engine thread.

Requests queue up; between decode steps the engine thread prefills waiting prompts (batched, one prefill shared by
the `n` choices of a request), adds them to the running batch, and drops sequences that finished. Keys and values
live in a `SlotKVCache`, so the prompt is never recomputed. Weight updates run on the same thread between steps;
sequences in flight are then restarted from their prompt on the new weights, so no completion mixes two policies.
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor

from prime_rl.inference.engines.base import (
    CompletionChoice,
    Engine,
    EngineError,
    GenerationResult,
    SamplingParams,
    TokenCallback,
)
from prime_rl.inference.engines.kv_cache import SlotKVCache, register_attention
from prime_rl.inference.engines.sampling import SamplingBatch, sample
from prime_rl.inference.engines.weights import copy_into, read_weight_dir, unique_state
from prime_rl.utils.logger import get_logger

ARRIVAL_QUIET_S = 0.005
ARRIVAL_MAX_WAIT_S = 0.05
"""From idle, the engine waits until requests stop arriving for ARRIVAL_QUIET_S (at most ARRIVAL_MAX_WAIT_S), so a
burst of requests shares one prefill instead of the first one being prefilled alone."""

PREFILL_TOKEN_BUDGET = 4096
"""Most (padded) prompt tokens prefilled in one forward; bounds the attention activations of a prefill."""


@dataclass(eq=False)
class _Request:
    prompt_ids: list[int]
    params: SamplingParams
    max_new: int
    future: asyncio.Future
    loop: asyncio.AbstractEventLoop
    seed: int
    on_token: TokenCallback | None = None
    sequences: list[_Sequence] = field(default_factory=list)
    policy_step: int = 0


@dataclass(eq=False)
class _Sequence:
    request: _Request
    index: int
    generator: torch.Generator
    length: int
    """Tokens held in the KV cache."""
    token_ids: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    top: list[list[tuple[int, float]]] | None = None
    finish_reason: str | None = None
    text: str | None = None


class HFEngine(Engine):
    """Serves a transformers causal LM whose attention layers call `cache.update` (Llama, Qwen, Mistral, SmolLM...)."""

    def __init__(
        self,
        model_path: str,
        dtype: str = "auto",
        device: str = "auto",
        max_model_len: int | None = None,
        max_batch_size: int = 64,
        num_threads: int | None = None,
        seed: int = 0,
    ):
        self.model_path, self.dtype_name, self.device_name = model_path, dtype, device
        self.requested_max_len = max_model_len
        self.max_batch_size = max_batch_size
        self.num_threads = num_threads
        self.policy_step = 0
        self.logger = get_logger("inference.engine")
        self._seed_rng = random.Random(seed)
        self._cond = threading.Condition()
        self._pending: deque[_Request] = deque()
        self._commands: deque[Callable[[], None]] = deque()
        self._active: list[_Sequence] = []
        self._in_flight: list[_Request] = []
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._base_state: dict[str, Tensor] | None = None
        self.stats = {"prefill_forwards": 0, "prefill_tokens": 0, "decode_steps": 0, "restarted_requests": 0}
        """Counters for tests and logs: prompts are prefilled once per request, not per choice or token."""

    # ------------------------------------------------------------------ setup

    def start(self) -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from prime_rl.utils.device import get_device, resolve_dtype, set_num_threads

        set_num_threads(self.num_threads)
        self.device = get_device(self.device_name)
        dtype = resolve_dtype(self.dtype_name, self.device)
        self.tokenizer = AutoTokenizer.from_pretrained(self.model_path)
        self.model = AutoModelForCausalLM.from_pretrained(
            self.model_path, dtype=dtype, attn_implementation=register_attention()
        )
        self.model.to(self.device).eval()
        config = self.model.config.get_text_config()
        self.max_model_len = self.requested_max_len or int(config.max_position_embeddings)
        self.stop_ids = sorted(self._stop_token_ids())
        self._stop_set = set(self.stop_ids)
        self._stop_tensor = torch.tensor(self.stop_ids, dtype=torch.long, device=self.device)
        self.pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.stop_ids[0]
        head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
        self.cache = SlotKVCache(config.num_hidden_layers, config.num_key_value_heads, head_dim, dtype, self.device)
        self.backbone = getattr(self.model, self.model.base_model_prefix)
        self.lm_head = self.model.get_output_embeddings()
        self._thread = threading.Thread(target=self._run, name="inference-engine", daemon=True)
        self._thread.start()
        self.logger.info(
            f"engine ready: {self.model_path} on {self.device} ({dtype}), max_model_len={self.max_model_len}"
        )

    def _stop_token_ids(self) -> set[int]:
        ids: set[int] = set()
        for source in (self.model.generation_config, self.model.config, self.tokenizer):
            eos = getattr(source, "eos_token_id", None)
            ids.update([eos] if isinstance(eos, int) else (eos or []))
        if not ids:
            raise EngineError(f"model `{self.model_path}` defines no eos_token_id", status=500)
        return ids

    def shutdown(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=30)

    # ------------------------------------------------------------------ public API (event loop side)

    def check(self, prompt_ids: list[int], params: SamplingParams) -> int:
        if not prompt_ids:
            raise EngineError("the prompt is empty", "messages")
        room = self.max_model_len - len(prompt_ids)
        if room <= 0:
            raise EngineError(
                f"the prompt has {len(prompt_ids)} tokens, the model's context is {self.max_model_len} tokens",
                "messages",
            )
        if params.n > self.max_batch_size:
            raise EngineError(f"n={params.n} exceeds the server's max_batch_size={self.max_batch_size}", "n")
        vocab = self.model.config.get_text_config().vocab_size
        if any(t < 0 or t >= vocab for t in prompt_ids):
            raise EngineError(f"prompt token ids must be in [0, {vocab})", "tokens")
        return room if params.max_tokens is None else min(params.max_tokens, room)

    async def generate(
        self, prompt_ids: list[int], params: SamplingParams, on_token: TokenCallback | None = None
    ) -> GenerationResult:
        max_new = self.check(prompt_ids, params)
        loop = asyncio.get_running_loop()
        seed = params.seed if params.seed is not None else self._seed_rng.getrandbits(63)
        request = _Request(list(prompt_ids), params, max_new, loop.create_future(), loop, seed, on_token)
        with self._cond:
            self._pending.append(request)
            self._cond.notify_all()
        return await request.future

    async def update_weights(self, weight_dir: Path, step: int) -> None:
        tensors = await asyncio.to_thread(read_weight_dir, weight_dir, self.model)
        await self._run_command(lambda: self._apply(tensors, step))

    async def reload_weights(self) -> None:
        await self._run_command(lambda: self._apply(self._base_state, 0) if self._base_state else self._set_step(0))

    async def _run_command(self, fn: Callable[[], None]) -> None:
        loop = asyncio.get_running_loop()
        done = loop.create_future()

        def command() -> None:
            try:
                fn()
            except Exception as e:
                loop.call_soon_threadsafe(_resolve, done, None, e)
                return
            loop.call_soon_threadsafe(_resolve, done, None, None)

        with self._cond:
            self._commands.append(command)
            self._cond.notify_all()
        await done

    # ------------------------------------------------------------------ engine thread

    def _run(self) -> None:
        with torch.inference_mode():
            while True:
                with self._cond:
                    while not (self._stopping or self._commands or self._pending or self._active):
                        self._cond.wait()
                    if self._stopping:
                        break
                    commands = list(self._commands)
                    self._commands.clear()
                for command in commands:
                    command()
                try:
                    self._step()
                except Exception as e:
                    self.logger.exception("engine step failed; failing the requests in flight")
                    self._fail(self._in_flight, e)
        with self._cond:
            pending = list(self._pending)
            self._pending.clear()
        self._fail(self._in_flight + pending, EngineError("the engine shut down", status=503))

    def _step(self) -> None:
        self._drop_cancelled()
        if not self._active:
            self._wait_for_burst()
        self._admit()
        if self._active:
            self._decode()
        if not self._active and not self._pending:
            self.cache.release()

    def _wait_for_burst(self) -> None:
        deadline = time.monotonic() + ARRIVAL_MAX_WAIT_S
        seen = -1
        while seen != len(self._pending) and time.monotonic() < deadline:
            seen = len(self._pending)
            time.sleep(ARRIVAL_QUIET_S)

    def _set_step(self, step: int) -> None:
        self.policy_step = step

    def _apply(self, tensors: dict[str, Tensor], step: int) -> None:
        """Copies weights in place and restarts everything in flight, so no completion mixes two policies."""
        if self._base_state is None:
            self._base_state = {k: v.detach().clone() for k, v in unique_state(self.model).items()}
        with torch.inference_mode(False), torch.no_grad():
            copy_into(self.model, tensors)
        # A stream cannot take back tokens it already sent, so streamed requests end with an error instead.
        streamed = [r for r in self._in_flight if r.on_token is not None]
        restart = [r for r in self._in_flight if r.on_token is None]
        for request in streamed:
            error = EngineError(f"weights were updated to policy step {step} during this stream; retry", status=409)
            request.loop.call_soon_threadsafe(_resolve, request.future, None, error)
        restarted = len(restart)
        self.stats["restarted_requests"] += restarted
        with self._cond:
            self._pending.extendleft(reversed(restart))
        self._in_flight, self._active = [], []
        self.policy_step = step
        self.logger.info(f"weights of policy step {step} loaded ({restarted} requests restarted)")

    def _fail(self, requests: list[_Request], error: Exception) -> None:
        self._in_flight, self._active = [], []
        self.cache.release()
        for request in requests:
            request.loop.call_soon_threadsafe(_resolve, request.future, None, error)

    def _drop_cancelled(self) -> None:
        if not any(r.future.cancelled() for r in self._in_flight):
            return
        self._in_flight = [r for r in self._in_flight if not r.future.cancelled()]
        self._compact([s for s in self._active if not s.request.future.cancelled()])

    # ------------------------------------------------------------------ prefill

    def _take_admissible(self) -> list[_Request]:
        """Pops waiting requests that fit in the batch and in one prefill forward."""
        taken: list[_Request] = []
        rows = len(self._active)
        with self._cond:
            while self._pending:
                request = self._pending[0]
                if request.future.cancelled():
                    self._pending.popleft()
                    continue
                longest = max([len(r.prompt_ids) for r in taken] + [len(request.prompt_ids)])
                if rows + request.params.n > self.max_batch_size:
                    break
                if taken and longest * (len(taken) + 1) > PREFILL_TOKEN_BUDGET:
                    break
                taken.append(self._pending.popleft())
                rows += request.params.n
        return taken

    def _admit(self) -> None:
        requests = self._take_admissible()
        if not requests:
            return
        first = len(self._active)
        lengths = [len(r.prompt_ids) for r in requests]
        longest = max(lengths)
        self.stats["prefill_forwards"] += 1
        self.stats["prefill_tokens"] += sum(lengths)
        total_rows = first + sum(r.params.n for r in requests)
        self.cache.reserve(total_rows, longest + 1)
        input_ids = torch.full((len(requests), longest), self.pad_id, dtype=torch.long)
        for i, request in enumerate(requests):
            input_ids[i, : lengths[i]] = torch.tensor(request.prompt_ids)
        length_t = torch.tensor(lengths)
        positions = torch.arange(longest)
        causal = positions[None, :] <= positions[:, None]
        mask = causal[None] & (positions[None, None, :] < length_t[:, None, None])
        self.cache.prepare(first, len(requests), None, longest)
        hidden = self.backbone(
            input_ids=input_ids.to(self.device),
            attention_mask=mask[:, None].to(self.device),
            position_ids=positions[None].expand(len(requests), -1).to(self.device),
            cache=self.cache,
            use_cache=True,
        ).last_hidden_state
        last = hidden[torch.arange(len(requests), device=self.device), (length_t - 1).to(self.device)]
        logits = self.lm_head(last)
        # Slots: the prefilled rows first (choice 0 of each request), then the other choices' copies, in order.
        rows = list(range(len(requests)))
        clones: list[_Sequence] = []
        for i, request in enumerate(requests):
            request.policy_step = self.policy_step
            request.sequences = self._new_sequences(request)
            for seq in request.sequences[1:]:
                self.cache.copy_slot(first + i, first + len(requests) + len(clones), lengths[i])
                clones.append(seq)
                rows.append(i)
        ordered = [r.sequences[0] for r in requests] + clones
        self._active.extend(ordered)
        self._in_flight.extend(requests)
        self._sample_and_advance(logits[torch.tensor(rows, device=self.device)], ordered)

    def _new_sequences(self, request: _Request) -> list[_Sequence]:
        seeds = torch.randint(
            0, 2**62, (request.params.n,), generator=torch.Generator().manual_seed(request.seed % 2**63)
        )
        return [
            _Sequence(
                request=request,
                index=i,
                generator=torch.Generator().manual_seed(int(s)),
                length=len(request.prompt_ids),
                top=[] if request.params.top_logprobs else None,
            )
            for i, s in enumerate(seeds)
        ]

    # ------------------------------------------------------------------ decode

    def _decode(self) -> None:
        seqs = self._active
        self.stats["decode_steps"] += 1
        positions = torch.tensor([s.length for s in seqs])
        read_len = int(positions.max()) + 1
        self.cache.reserve(len(seqs), read_len)
        mask = torch.arange(read_len)[None, :] <= positions[:, None]
        input_ids = torch.tensor([[s.token_ids[-1]] for s in seqs], device=self.device)
        positions_d = positions.to(self.device)
        self.cache.prepare(0, len(seqs), positions_d, read_len)
        hidden = self.backbone(
            input_ids=input_ids,
            attention_mask=mask[:, None, None, :].to(self.device),
            position_ids=positions_d[:, None],
            cache=self.cache,
            use_cache=True,
        ).last_hidden_state
        logits = self.lm_head(hidden[:, 0])
        for seq in seqs:
            seq.length += 1
        self._sample_and_advance(logits, seqs)

    def _sample_and_advance(self, logits: Tensor, seqs: list[_Sequence]) -> None:
        """Samples the next token of `seqs` (the last rows of the batch), records it and retires finished ones."""
        batch = self._sampling_batch(seqs)
        out = sample(logits, batch, self._stop_tensor)
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
            self._check_finished(seq)
            if seq.request.on_token is not None:
                top = seq.top[-1] if seq.top else []
                event = (seq.index, tokens[i], logprobs[i], top, seq.finish_reason is not None)
                streamed.setdefault(seq.request.loop, []).append((seq.request.on_token, event))
        # One wake-up of each event loop per step, not one per streamed token.
        for loop, calls in streamed.items():
            loop.call_soon_threadsafe(_dispatch, calls)
        if any(s.finish_reason for s in seqs):
            self._retire()

    def _sampling_batch(self, seqs: list[_Sequence]) -> SamplingBatch:
        params = [s.request.params for s in seqs]
        uniform = [float(torch.rand((), generator=s.generator)) for s in seqs]
        return SamplingBatch(
            temperature=torch.tensor([p.temperature for p in params], device=self.device),
            top_p=torch.tensor([p.top_p for p in params], device=self.device),
            top_k=torch.tensor([max(p.top_k, 0) for p in params], device=self.device),
            min_p=torch.tensor([p.min_p for p in params], device=self.device),
            ban_stop=torch.tensor([len(s.token_ids) < p.min_tokens for s, p in zip(seqs, params, strict=True)]).to(
                self.device
            ),
            uniform=torch.tensor(uniform, device=self.device),
            num_top_logprobs=max(p.top_logprobs for p in params),
        )

    def _check_finished(self, seq: _Sequence) -> None:
        params = seq.request.params
        token = seq.token_ids[-1]
        if token in self._stop_set:
            seq.finish_reason = "stop"
            seq.text = self.tokenizer.decode(seq.token_ids[:-1], skip_special_tokens=True)
            return
        if params.stop and len(seq.token_ids) >= params.min_tokens:
            text = self.tokenizer.decode(seq.token_ids, skip_special_tokens=True)
            hits = [i for s in params.stop if (i := text.find(s)) >= 0]
            if hits:
                seq.finish_reason, seq.text = "stop", text[: min(hits)]
                return
        if len(seq.token_ids) >= seq.request.max_new:
            seq.finish_reason = "length"
            seq.text = self.tokenizer.decode(seq.token_ids, skip_special_tokens=True)

    def _retire(self) -> None:
        """Removes finished sequences from the batch and answers requests whose choices have all finished."""
        self._compact([s for s in self._active if s.finish_reason is None])
        still: list[_Request] = []
        for request in self._in_flight:
            if all(s.finish_reason for s in request.sequences):
                result = GenerationResult(
                    prompt_ids=request.prompt_ids,
                    choices=[_to_choice(s) for s in request.sequences],
                    policy_step=request.policy_step,
                )
                request.loop.call_soon_threadsafe(_resolve, request.future, result, None)
            else:
                still.append(request)
        self._in_flight = still

    def _compact(self, keep: list[_Sequence]) -> None:
        """Moves the kept sequences' cache rows down so they occupy slots 0..len(keep)-1, in order."""
        slot_of = {id(s): i for i, s in enumerate(self._active)}
        for new_slot, seq in enumerate(keep):
            old_slot = slot_of[id(seq)]
            if old_slot != new_slot:
                self.cache.copy_slot(old_slot, new_slot, seq.length)
        self._active = keep


def _to_choice(seq: _Sequence) -> CompletionChoice:
    return CompletionChoice(
        token_ids_T=seq.token_ids,
        logprobs_T=seq.logprobs,
        top_logprobs_T=seq.top,
        text=seq.text or "",
        finish_reason="stop" if seq.finish_reason == "stop" else "length",
    )


def _dispatch(calls: list) -> None:
    for fn, args in calls:
        fn(*args)


def _resolve(future: asyncio.Future, result: object, error: Exception | None) -> None:
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)

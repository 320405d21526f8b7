"""vLLM behind the `Engine` interface: vLLM's `AsyncLLM` lives on an event loop of its own (one thread), so the HTTP
app, its validation and its routes stay the same for both engines.

Logprobs: vLLM runs with `logprobs_mode = "processed_logprobs"`, i.e. `log_softmax` of the logits after temperature
(and after top-k/top-p/min-p and the `min_tokens` EOS mask, which are off in RL sampling), not vLLM's default of the
raw, untempered distribution. Weight updates pause vLLM with `mode="abort"` (what runs is aborted, caches cleared),
load the safetensors into every worker through `vllm_worker.WeightLoaderExtension`, and resume; a request whose
generation overlapped an update restarts on the new weights (a streamed one ends with a 409 instead), so no
completion mixes two policies. A LoRA broadcast is served with vLLM's LoRA support instead (`vllm_lora.py`): the same
pause registers it as a new `LoRARequest` that every later request runs with, and removes the previous one.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import itertools
import os
import random
import threading
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prime_rl.inference.engines.base import (
    CompletionChoice,
    Engine,
    EngineError,
    GenerationResult,
    SamplingParams,
    ScoreResult,
    TokenCallback,
    check_request,
    check_score,
)
from prime_rl.inference.engines.vllm_lora import lora_engine_args
from prime_rl.utils.logger import get_logger

if TYPE_CHECKING:
    from prime_rl.inference.config import InferenceConfig

WORKER_EXTENSION = "prime_rl.inference.engines.vllm_worker.WeightLoaderExtension"
CPU_KV_CACHE_GIB = 2
"""KV cache of the CPU build when neither `vllm.kv_cache_gib` nor `VLLM_CPU_KVCACHE_SPACE` is set: vLLM's CPU worker
otherwise reserves `gpu_memory_utilization` of all host memory."""


def vllm_engine_args(config: InferenceConfig, model_path: str, on_gpu: bool) -> dict[str, Any]:
    """`vllm.AsyncEngineArgs` keyword arguments of `config` (`[inference.vllm]` plus the shared fields)."""
    v = config.vllm
    dtype = v.dtype or config.model.dtype
    if dtype == "auto":  # like the HF engine: float32 on CPU (bfloat16 is ~3x slower there), vLLM's choice on GPU
        dtype = "auto" if on_gpu else "float32"
    args: dict[str, Any] = {
        "model": model_path,
        "dtype": dtype,
        "max_model_len": config.model.max_model_len,
        "seed": config.seed,
        "max_num_seqs": v.max_num_seqs or config.max_batch_size,
        "gpu_memory_utilization": v.gpu_memory_utilization,
        "tensor_parallel_size": v.tensor_parallel_size,
        "enforce_eager": v.enforce_eager,
        "logprobs_mode": "processed_logprobs",
        "worker_extension_cls": WORKER_EXTENSION,
        "disable_log_stats": True,
    }
    if v.max_lora_rank is not None:
        args |= lora_engine_args(v.max_lora_rank)
    if not on_gpu:
        # vLLM 0.32's CPU worker dies ("CPU Generator does not use offset") when it rewinds the generator of a seeded
        # request whose prompt was prefilled in chunks, and every request here is seeded: prefill prompts whole.
        args["enable_chunked_prefill"] = False
    if v.enable_prefix_caching is not None:
        args["enable_prefix_caching"] = v.enable_prefix_caching
    if v.kv_cache_gib is not None:
        args["kv_cache_memory_bytes"] = int(v.kv_cache_gib * 2**30)
    elif not on_gpu and "VLLM_CPU_KVCACHE_SPACE" not in os.environ:
        args["kv_cache_memory_bytes"] = CPU_KV_CACHE_GIB * 2**30
    return {**args, **v.engine_args}


def setup_vllm_engine(config: InferenceConfig) -> VLLMEngine:
    """Builds and starts the vLLM engine described by `config` (blocks through vLLM's start-up and warm-up)."""
    import torch

    from prime_rl.utils.models import resolve_model_path
    from prime_rl.utils.threads import setup_threads

    on_gpu = torch.cuda.is_available()
    if not on_gpu and config.num_threads and "VLLM_CPU_OMP_THREADS_BIND" not in os.environ:
        # vLLM's CPU worker otherwise pins its threads to cores it picks itself, ignoring `num_threads`.
        os.environ["VLLM_CPU_OMP_THREADS_BIND"] = "nobind"
    if not on_gpu:
        # vLLM 0.32's AOT compile cache never loads on CPU: its loader calls `finalize_loading` of vLLM's own compiled
        # function, but the CPU build compiles with plain inductor, so every start compiled again. Without it, torch's
        # inductor caches serve the next start (benchmarks/vllm_startup.py).
        os.environ.setdefault("VLLM_USE_AOT_COMPILE", "0")
    setup_threads(config.num_threads, "inference")
    model_path = resolve_model_path(config.model.name)
    engine = VLLMEngine(model_path, vllm_engine_args(config, model_path, on_gpu), config.seed)
    engine.start()
    return engine


class VLLMEngine(Engine):
    """Serves a model with vLLM; `engine_args` are `vllm.AsyncEngineArgs` fields (see `vllm_engine_args`)."""

    def __init__(self, model_path: str, engine_args: dict[str, Any], seed: int = 0):
        self.model_path = model_path
        self.engine_args = engine_args
        self.max_batch_size = int(engine_args.get("max_num_seqs") or 1)
        self.policy_step = 0
        self.logger = get_logger("inference.engine")
        self._seed_rng = random.Random(seed)
        self._ids = itertools.count()
        self._loop = asyncio.new_event_loop()
        self._thread: threading.Thread | None = None
        self._llm: Any = None
        self._epoch = 0
        """Counts weight swaps: a generation is valid only if no swap started or ran while it was generated."""
        self._max_lora_rank: int | None = engine_args.get("max_lora_rank") if engine_args.get("enable_lora") else None
        self._lora: Any = None
        """The `LoRARequest` of the served adapter, which every request runs with (None: the weights alone)."""
        self._lora_ids = itertools.count(1)
        self._base_modified = False
        """A full update replaced the base weights; an adapter goes onto the reloaded base (as with the HF engine)."""
        self._ready: asyncio.Event | None = None
        self._swap_lock: asyncio.Lock | None = None
        self.stats = {"restarted_requests": 0}

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        from transformers import AutoTokenizer

        from prime_rl.inference.engines.vllm_weights import parameter_table

        self.tokenizer = AutoTokenizer.from_pretrained(self.model_path)
        self._parameters = parameter_table(self.model_path)
        self.stop_ids = stop_token_ids(self.model_path, self.tokenizer)
        self._thread = threading.Thread(target=self._loop.run_forever, name="vllm-engine", daemon=True)
        self._thread.start()
        self._submit(self._start()).result()
        self.logger.info(
            f"vLLM engine ready: {self.model_path} ({self.engine_args['dtype']}), max_model_len={self.max_model_len}"
        )

    async def _start(self) -> None:
        from vllm import AsyncEngineArgs
        from vllm.v1.engine.async_llm import AsyncLLM

        from prime_rl.inference.engines.vllm_executor import executor_dying_with_server

        self._ready, self._swap_lock = asyncio.Event(), asyncio.Lock()
        self._ready.set()
        args = AsyncEngineArgs(**self.engine_args)
        vllm_config = args.create_engine_config()
        executor = executor_dying_with_server(vllm_config)
        log = {"log_stats": not args.disable_log_stats, "log_requests": args.enable_log_requests}
        self._llm = AsyncLLM(vllm_config, executor, **log)
        self.max_model_len = int(self._llm.model_config.max_model_len)
        self.vocab_size = int(self._llm.model_config.get_vocab_size())

    def shutdown(self) -> None:
        if self._llm is not None:
            self._llm.shutdown()
            self._llm = None
        if self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=30)
            self._thread = None

    def failure(self) -> str | None:
        if self._llm is not None and self._llm.errored:
            return (
                "vLLM's engine core died (one of its processes exited, e.g. killed by the out-of-memory killer; "
                "its error is logged above)"
            )
        return None

    def _submit(self, coro: Coroutine) -> concurrent.futures.Future:
        return asyncio.run_coroutine_threadsafe(coro, self._loop)

    async def _on_engine_loop(self, coro: Coroutine) -> Any:
        """Runs `coro` on the engine's loop; cancelling the caller cancels it (and so aborts the vLLM request)."""
        return await asyncio.wrap_future(self._submit(coro))

    # ------------------------------------------------------------------ requests

    def check(self, prompt_ids: list[int], params: SamplingParams) -> int:
        return check_request(prompt_ids, params, self.max_model_len, self.vocab_size, self.max_batch_size)

    async def generate(
        self, prompt_ids: list[int], params: SamplingParams, on_token: TokenCallback | None = None
    ) -> GenerationResult:
        max_new = self.check(prompt_ids, params)
        seed = params.seed if params.seed is not None else self._seed_rng.getrandbits(32)
        emit = None
        if on_token is not None:
            caller = asyncio.get_running_loop()

            def emit(events: list[tuple]) -> None:
                caller.call_soon_threadsafe(_dispatch, on_token, events)

        return await self._on_engine_loop(self._generate(list(prompt_ids), params, max_new, seed, emit))

    async def _generate(
        self,
        prompt_ids: list[int],
        params: SamplingParams,
        max_new: int,
        seed: int,
        emit: Callable[[list[tuple]], None] | None,
    ) -> GenerationResult:
        """Retries until one generation ran entirely between two weight swaps."""
        while True:
            await self._ready.wait()
            epoch, step, lora = self._epoch, self.policy_step, self._lora
            sampling = vllm_sampling_params(params, max_new, seed, self.stop_ids, emit is not None)
            outputs = await self._attempt(prompt_ids, sampling, emit, lora)
            aborted = any(o.finish_reason == "abort" for o in outputs)
            if epoch == self._epoch and not aborted:
                choices = [to_choice(o, params.top_logprobs if params.logprobs else 0) for o in outputs]
                return GenerationResult(prompt_ids=prompt_ids, choices=choices, policy_step=step)
            if epoch == self._epoch:
                raise EngineError("vLLM aborted the request", status=503)
            if emit is not None:  # a stream cannot take back the tokens it sent
                raise EngineError(
                    f"weights were updated to policy step {self.policy_step} during this stream; retry", status=409
                )
            self.stats["restarted_requests"] += 1

    async def _attempt(self, prompt_ids: list[int], sampling: Any, emit: Callable | None, lora: Any) -> list[Any]:
        """One vLLM generation (with the adapter `lora`, if any); returns its `n` final completion outputs in index
        order."""
        from vllm.inputs import TokensPrompt

        request_id = f"prime-rl-{next(self._ids)}"
        final: dict[int, Any] = {}
        sent: dict[int, int] = {}
        prompt = TokensPrompt(prompt_token_ids=prompt_ids)
        async for out in self._llm.generate(prompt, sampling, request_id, lora_request=lora):
            for completion in out.outputs:
                final[completion.index] = completion
                if emit is not None:
                    emit(_new_token_events(completion, sent, sampling.logprobs or 0))
        return [final[i] for i in sorted(final)]

    async def score(self, tokens: list[int], start: int, temperature: float) -> ScoreResult:
        """vLLM's prompt logprobs of `tokens` (one extra token is generated and dropped)."""
        check_score(tokens, start, self.max_model_len - 1, self.vocab_size)
        if temperature != 1.0:
            raise EngineError(
                f"the vLLM engine scores at temperature 1 only (got {temperature}): vLLM's prompt logprobs are those "
                "of the untempered distribution",
                "temperature",
            )
        return await self._on_engine_loop(self._score(list(tokens), start))

    async def _score(self, tokens: list[int], start: int) -> ScoreResult:
        """Retries until one scoring pass ran entirely between two weight swaps."""
        from vllm import SamplingParams as VLLMSamplingParams
        from vllm.inputs import TokensPrompt

        params = VLLMSamplingParams(max_tokens=1, temperature=1.0, prompt_logprobs=0, detokenize=False)
        while True:
            await self._ready.wait()
            epoch, step, lora = self._epoch, self.policy_step, self._lora
            final = None
            request_id = f"prime-rl-score-{next(self._ids)}"
            async for out in self._llm.generate(
                TokensPrompt(prompt_token_ids=tokens), params, request_id, lora_request=lora
            ):
                final = out
            if epoch == self._epoch and final is not None and final.prompt_logprobs is not None:
                rows = final.prompt_logprobs  # row t: logprobs at position t (row 0 is None)
                return ScoreResult([rows[t][tokens[t]].logprob for t in range(start, len(tokens))], step)
            if epoch == self._epoch:
                raise EngineError("vLLM returned no prompt logprobs", status=503)
            self.stats["restarted_requests"] += 1

    # ------------------------------------------------------------------ weights

    async def update_weights(self, weight_dir: Path, step: int) -> None:
        """Full weights, or a LoRA adapter (`adapter_config.json` present) registered with vLLM's LoRA support."""
        from prime_rl.inference.engines.vllm_lora import check_adapter_dir
        from prime_rl.inference.engines.vllm_weights import check_weight_dir
        from prime_rl.weights.adapter import is_adapter_dir

        if is_adapter_dir(weight_dir):
            await asyncio.to_thread(check_adapter_dir, weight_dir, self._parameters, self._max_lora_rank)
            await self._on_engine_loop(self._swap(lambda: self._load_adapter(weight_dir), step, "LoRA adapter"))
            return
        await asyncio.to_thread(check_weight_dir, weight_dir, self._parameters)
        await self._on_engine_loop(self._swap(lambda: self._load_weights(weight_dir), step, "weights"))

    async def reload_weights(self) -> None:
        await self._on_engine_loop(self._swap(self._load_base, 0, "base weights"))

    async def _swap(self, load: Callable[[], Coroutine], step: int, what: str) -> None:
        """Pauses vLLM (aborting what runs), runs `load`, resumes; aborted requests restart on what was loaded."""
        async with self._swap_lock:
            self._ready.clear()
            self._epoch += 1
            try:
                await self._llm.pause_generation(mode="abort", clear_cache=True)
                await load()
                self.policy_step = step
            finally:
                await self._llm.resume_generation()
                self._ready.set()
        self.logger.info(f"{what} of policy step {step} loaded")

    async def _load_weights(self, weight_dir: Path) -> None:
        await self._drop_adapter()
        await self._llm.collective_rpc("prime_rl_load_weight_dir", args=(str(weight_dir),))
        self._base_modified = True

    async def _load_base(self) -> None:
        await self._drop_adapter()
        await self._llm.collective_rpc("prime_rl_load_base_weights")
        self._base_modified = False

    async def _load_adapter(self, weight_dir: Path) -> None:
        """Registers the adapter under a new id (vLLM caches adapters by id), then removes the previous one."""
        from vllm.lora.request import LoRARequest

        if self._base_modified:
            await self._load_base()
        lora_id = next(self._lora_ids)
        request = LoRARequest(f"prime-rl-lora-{lora_id}", lora_id, str(weight_dir))
        try:
            await self._llm.add_lora(request)
        except Exception as e:
            raise EngineError(f"vLLM cannot load the LoRA adapter in `{weight_dir}`: {e}", "weight_dir") from None
        await self._drop_adapter()
        self._lora = request
        self.logger.info(
            f"LoRA adapter {weight_dir} registered as id {lora_id}; ids held: {sorted(await self._llm.list_loras())}"
        )

    async def _drop_adapter(self) -> None:
        if self._lora is not None:
            await self._llm.remove_lora(self._lora.lora_int_id)
            self._lora = None


def stop_token_ids(model_path: str, tokenizer: Any) -> list[int]:
    """The EOS ids the HF engine stops on: the model config's, the generation config's and the tokenizer's."""
    from transformers import AutoConfig, GenerationConfig

    sources: list[Any] = [AutoConfig.from_pretrained(model_path), tokenizer]
    if (Path(model_path) / "generation_config.json").is_file():
        sources.append(GenerationConfig.from_pretrained(model_path))
    ids: set[int] = set()
    for source in sources:
        eos = getattr(source, "eos_token_id", None)
        ids.update([eos] if isinstance(eos, int) else (eos or []))
    return sorted(ids)


def vllm_sampling_params(params: SamplingParams, max_new: int, seed: int, stop_ids: list[int], stream: bool) -> Any:
    """vLLM's `SamplingParams` of a request: always the sampled token's logprob (plus `top_logprobs`)."""
    from vllm import SamplingParams as VLLMSamplingParams
    from vllm.sampling_params import RequestOutputKind

    return VLLMSamplingParams(
        n=params.n,
        temperature=params.temperature,
        top_p=params.top_p,
        top_k=params.top_k,
        min_p=params.min_p,
        max_tokens=max_new,
        min_tokens=min(params.min_tokens, max_new),
        stop=list(params.stop) or None,
        stop_token_ids=stop_ids,
        seed=seed,
        logprobs=params.top_logprobs if params.logprobs else 0,
        output_kind=RequestOutputKind.CUMULATIVE if stream else RequestOutputKind.FINAL_ONLY,
    )


def _token_logprobs(completion: Any, start: int, num_top: int) -> list[tuple[int, float, list[tuple[int, float]]]]:
    """`(token id, logprob, top logprobs)` of the completion's tokens from position `start` on."""
    rows = []
    for t in range(start, len(completion.token_ids)):
        token = completion.token_ids[t]
        position = completion.logprobs[t]
        ranked = sorted((lp.rank, tid, lp.logprob) for tid, lp in position.items() if lp.rank and lp.rank <= num_top)
        rows.append((token, position[token].logprob, [(tid, lp) for _, tid, lp in ranked]))
    return rows


def _new_token_events(completion: Any, sent: dict[int, int], num_top: int) -> list[tuple]:
    """Streaming events `(index, token, logprob, top, is_last)` of the tokens not yet sent for this completion."""
    start = sent.get(completion.index, 0)
    rows = _token_logprobs(completion, start, num_top)
    sent[completion.index] = start + len(rows)
    done = completion.finish_reason is not None
    return [(completion.index, token, lp, top, done and i == len(rows) - 1) for i, (token, lp, top) in enumerate(rows)]


def to_choice(completion: Any, num_top: int) -> CompletionChoice:
    rows = _token_logprobs(completion, 0, num_top)
    return CompletionChoice(
        token_ids_T=[token for token, _, _ in rows],
        logprobs_T=[lp for _, lp, _ in rows],
        top_logprobs_T=[top for _, _, top in rows] if num_top else None,
        text=completion.text,
        finish_reason="stop" if completion.finish_reason == "stop" else "length",
    )


def _dispatch(on_token: TokenCallback, events: list[tuple]) -> None:
    for event in events:
        on_token(*event)

"""Configuration of the `inference` server: the model it serves, where it listens, and engine limits."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from prime_rl.utils.config import BaseConfig, BaseSettingsConfig
from prime_rl.utils.config.sections import LoadedModelConfig, LogConfig


class InferenceModelConfig(LoadedModelConfig):
    """The served model."""

    max_model_len: int | None = Field(default=None, ge=2)
    """Context length (prompt + completion) in tokens; None uses the model's `max_position_embeddings`."""


class ServerConfig(BaseConfig):
    """The HTTP front end."""

    host: str = "127.0.0.1"
    """Address to bind; the default accepts local connections only."""

    port: int = Field(default=8000, ge=0, le=65535)
    """TCP port to listen on (`eval` picks a free one for 0)."""

    api_key: str | None = None
    """If set, every route except `/health` requires `Authorization: Bearer <api_key>`."""

    max_body_bytes: int = Field(default=8 * 2**20, ge=1024)
    """Largest request body accepted; a larger one is answered 413 without being read."""


class VLLMConfig(BaseConfig):
    """Options of the vLLM engine (`engine = "vllm"`), passed to vLLM's engine arguments; None keeps vLLM's default."""

    gpu_memory_utilization: float = Field(default=0.9, gt=0.0, le=1.0)
    """Fraction of each GPU's memory vLLM may use (weights + KV cache); ignored on CPU."""

    tensor_parallel_size: int = Field(default=1, ge=1)
    """GPUs one server shards the model over."""

    enable_prefix_caching: bool | None = None
    """Reuse the KV cache of shared prompt prefixes (reset at every weight update)."""

    max_num_seqs: int | None = Field(default=None, ge=1)
    """Most sequences decoded together; None uses the server's `max_batch_size`."""

    dtype: Literal["auto", "float32", "bfloat16", "float16"] | None = None
    """Overrides `model.dtype` for vLLM (`auto` is vLLM's own choice from the model config)."""

    enforce_eager: bool = False
    """Skip CUDA graphs / compilation: faster start-up, slower decoding."""

    max_lora_rank: int | None = Field(default=None, ge=1, le=512)
    """Serve LoRA adapters up to this rank (vLLM's `enable_lora`; `/update_weights` then also takes a peft adapter
    directory), rounded up to a rank vLLM supports (1, 8, 16, 32, 64, 128, 256, 320, 512); `rl` sets it from
    `[model.lora]`. None: LoRA off."""

    kv_cache_gib: float | None = Field(default=None, gt=0)
    """KV cache size in GiB; None sizes it from `gpu_memory_utilization` on GPUs, and on CPU uses
    `VLLM_CPU_KVCACHE_SPACE` or 2 GiB."""

    engine_args: dict[str, Any] = Field(default_factory=dict)
    """Any other `vllm.AsyncEngineArgs` field, passed as given (e.g. `{ swap_space = 2 }`)."""


class InferenceConfig(BaseSettingsConfig):
    """OpenAI-compatible inference server with token ids, logprobs and live weight updates."""

    model: InferenceModelConfig = InferenceModelConfig()
    """The served model."""

    server: ServerConfig = ServerConfig()
    """The HTTP front end."""

    output_dir: Path = Path("outputs")
    """Run output root: `/update_weights` refuses any `weight_dir` outside it."""

    num_threads: int | None = Field(default=None, ge=1)
    """Torch intra-op threads of the engine (None: the cores this process may run on, less one for the HTTP front
    end; `rl` splits the cores with the trainer). More than those cores is warned about (docs/scaling.md, Threads)."""

    pin_threads: bool = False
    """Pin the HF engine's compute thread to the last `num_threads` cores of the process's affinity mask (the front
    end keeps the others). Off by default: on a shared machine a pinned thread cannot leave a busy core."""

    max_batch_size: int = Field(default=64, ge=1)
    """Most sequences decoded together; further requests wait in the queue."""

    seed: int = 0
    """Seeds the per-request generators of requests that give no `seed`."""

    log: LogConfig = LogConfig()
    """Logging."""

    engine: Literal["hf", "vllm"] = "hf"
    """`hf`: the built-in transformers engine (any device, starts in seconds); `vllm`: vLLM (GPU, or its CPU build)."""

    vllm: VLLMConfig = VLLMConfig()
    """Options of the vLLM engine."""

    num_servers: int = Field(default=1, ge=1)
    """`rl` only: inference servers to start, on ports `server.port`, `server.port + 1`, ... (each on its own GPUs
    when CUDA is visible); the orchestrator spreads requests over them."""

    gpu_ids: list[int] | None = None
    """`rl` only: the GPUs of the inference servers, `tensor_parallel_size` per server in order (sets each server's
    `CUDA_VISIBLE_DEVICES`; e.g. `[4, 5, 6, 7]` beside a trainer on 0-3). None: one server sees every GPU, several
    split `CUDA_VISIBLE_DEVICES` (or 0, 1, ...)."""

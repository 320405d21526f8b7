"""Configuration of the `inference` server: the model it serves, where it listens, and engine limits."""

from __future__ import annotations

from pathlib import Path

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


class InferenceConfig(BaseSettingsConfig):
    """OpenAI-compatible inference server with token ids, logprobs and live weight updates."""

    model: InferenceModelConfig = InferenceModelConfig()
    """The served model."""

    server: ServerConfig = ServerConfig()
    """The HTTP front end."""

    output_dir: Path = Path("outputs")
    """Run output root: `/update_weights` refuses any `weight_dir` outside it."""

    num_threads: int | None = Field(default=None, ge=1)
    """Torch intra-op threads of the engine (None = torch default); leave cores to a trainer on the same machine."""

    max_batch_size: int = Field(default=64, ge=1)
    """Most sequences decoded together; further requests wait in the queue."""

    seed: int = 0
    """Seeds the per-request generators of requests that give no `seed`."""

    log: LogConfig = LogConfig()
    """Logging."""

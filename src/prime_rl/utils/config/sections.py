"""Config sections shared by several commands, each declared once: the model, logging, checkpoints, sampling,
environments, the inference client and W&B. A command extends a section only with fields that it alone uses."""

from __future__ import annotations

import importlib.util
from typing import Annotated, Any, Literal, TypeVar

from pydantic import AfterValidator, Field, field_validator, model_validator

from prime_rl.utils.config.base import BaseConfig


class ModelConfig(BaseConfig):
    """The model, named the same way by every process."""

    name: str = "smollm2-135m-instruct"
    """Hugging Face hub id, local directory, or the built-in alias `smollm2-135m-instruct`; the orchestrator and
    `eval` load its tokenizer and send it as `model` in requests."""


class LoadedModelConfig(ModelConfig):
    """A model whose weights the process loads (trainer, inference server)."""

    dtype: Literal["auto", "float32", "bfloat16", "float16", "float64"] = "auto"
    """Weights and activations dtype; `auto` is float32 on CPU and bfloat16 on CUDA (`float64`: exactness checks)."""
    device: str = "auto"
    """Torch device (`auto`: CUDA when available, else CPU; or `cpu`, `cuda`, `cuda:1`, ...)."""


class LogConfig(BaseConfig):
    """Console and file logging of one process."""

    level: Literal["debug", "info", "warning", "error"] = "info"
    """Log level (case-insensitive)."""
    file: bool = False
    """Also write the log to `output_dir/logs/<process>.log` (always off under `rl`, which captures the console there;
    on by default for the trainers)."""

    @field_validator("level", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return value.lower() if isinstance(value, str) else value


class CkptConfig(BaseConfig):
    """Checkpoints of one process under `checkpoints/step_N/<process>/`, and resuming from them."""

    interval: int | None = Field(None, ge=1)
    """Save every this many steps and after the last step (None: no checkpoints)."""
    resume_step: int | None = Field(None, ge=-1)
    """Resume from this checkpoint step (-1: the latest complete one; None: start fresh)."""
    keep_last: int | None = Field(None, ge=1)
    """Keep only the newest this many checkpoints (None: keep all)."""


class SamplingConfig(BaseConfig):
    """Sampling parameters of every rollout request."""

    temperature: float = Field(1.0, gt=0)
    """Sampling temperature; the trainer divides its logits by the same value."""
    top_p: float = Field(1.0, gt=0, le=1)
    """Nucleus sampling mass (1.0 disables it)."""
    top_k: int = Field(-1, ge=-1)
    """Sample among the `top_k` most likely tokens only (-1 disables it)."""
    min_p: float = Field(0.0, ge=0, le=1)
    """Drop tokens less likely than `min_p` times the most likely one (0 disables it)."""
    max_tokens: int = Field(128, ge=1)
    """Maximum completion tokens per model turn."""
    min_tokens: int = Field(0, ge=0)
    """Minimum completion tokens per model turn (end-of-sequence is suppressed before)."""
    stop: list[str] | None = None
    """Stop strings ending a completion early."""

    @model_validator(mode="after")
    def _check_lengths(self) -> SamplingConfig:
        if self.min_tokens > self.max_tokens:
            raise ValueError(f"min_tokens ({self.min_tokens}) exceeds max_tokens ({self.max_tokens})")
        return self


class EnvConfig(BaseConfig):
    """One environment (an `[[env]]` table)."""

    id: str = "reverse-text"
    """Built-in environment name or import path of a module exposing `load_environment(**args)`."""
    args: dict[str, Any] = Field(default_factory=dict)
    """Keyword arguments of `load_environment`."""
    name: str | None = None
    """Name in metrics, batches and results (default: the environment's own name); unique across `[[env]]` tables."""


E = TypeVar("E", bound=EnvConfig)


def _unique_names(envs: list[E]) -> list[E]:
    names = [e.name or e.id for e in envs]
    if len(set(names)) != len(names):
        raise ValueError(f"environment names must be unique (set `name` on repeated ids): {names}")
    return envs


def env_tables(cls: type[E]) -> Any:
    """The type of an `[[env]]` list: tables of `cls` whose names (`name`, else `id`) are unique."""
    return Annotated[list[cls], AfterValidator(_unique_names)]


class ClientConfig(BaseConfig):
    """How a process reaches the inference server(s)."""

    base_url: list[str] = Field(default_factory=lambda: ["http://127.0.0.1:8000/v1"], min_length=1)
    """OpenAI-compatible base URLs (ending in `/v1`; one URL may be given as a string); several are used round-robin."""
    api_key: str | None = None
    """Bearer token, if the servers require one."""
    timeout: float = Field(600.0, gt=0)
    """Seconds before one request times out."""
    retry_timeout: float = Field(120.0, ge=0)
    """Seconds to retry a request failing with a connection error, timeout or 5xx before the run stops (0: no retry)."""
    health_timeout: float = Field(600.0, gt=0)
    """Seconds to wait at start-up for every server's `/health`."""

    @field_validator("base_url", mode="before")
    @classmethod
    def _one_url(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value


def wandb_installed() -> bool:
    """Whether `import wandb` can succeed, without importing it (it is an optional dependency)."""
    try:
        return importlib.util.find_spec("wandb") is not None
    except (ImportError, ValueError):  # a `None` entry in sys.modules blocks the import
        return False


class WandbConfig(BaseConfig):
    """Weights & Biases logging; every process of a run logs to the same W&B run (docs/integrations.md)."""

    project: str = "prime-rl"
    """W&B project."""
    entity: str | None = None
    """W&B entity (user or team; None: the account's default)."""
    name: str | None = None
    """Display name of the run (None: W&B picks one)."""
    tags: list[str] = Field(default_factory=list)
    """Tags of the run."""
    offline: bool = False
    """Write the run locally under `output_dir/wandb/<process>/` (upload later with `wandb sync`)."""
    id: str | None = None
    """Run id the processes share (`rl` generates one when unset; set it to continue a W&B run on resume)."""

    @model_validator(mode="after")
    def _check_installed(self) -> WandbConfig:
        if not wandb_installed():
            raise ValueError('the `wandb` package is not installed (pip install -e ".[wandb]")')
        return self

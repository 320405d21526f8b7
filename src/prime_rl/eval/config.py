"""`EvalConfig` (`eval @ eval.toml`): which model(s), which environments, how to sample, which inference server.

No torch import here: configs are parsed (and `--help` answered) before any heavy import.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from prime_rl.orchestrator.config import SamplingConfig
from prime_rl.utils.config import BaseConfig, BaseSettingsConfig


class EvalModelConfig(BaseConfig):
    """The base model: served by the inference server, its tokenizer given to multi-turn environments."""

    name: str = "smollm2-135m-instruct"
    """Hugging Face hub id, local directory or built-in alias; the `weights/step_N` dirs must fit its architecture."""


class EvalEnvConfig(BaseConfig):
    """One environment whose eval split is evaluated."""

    id: str = "reverse-text"
    """Built-in environment name or import path of a module exposing `load_environment(**args)`."""
    args: dict[str, Any] = Field(default_factory=dict)
    """Keyword arguments of `load_environment`."""
    name: str | None = None
    """Name in the results (default: the environment's own name); must be unique across `[[env]]` tables."""
    num_examples: int | None = Field(None, ge=1)
    """Examples of this environment's eval split (default: the top-level `num_examples`)."""


class OnlineEvalConfig(BaseConfig):
    """Periodic evaluation during `rl` (`[orchestrator.eval]`): the served policy on eval splits, as `eval/...`."""

    interval: int = Field(10, ge=1)
    """Evaluate every this many steps (and after the last step)."""
    env: list[EvalEnvConfig] = Field(default_factory=lambda: [EvalEnvConfig()], min_length=1)
    """Environments (`[[orchestrator.eval.env]]` tables)."""
    num_examples: int | None = Field(None, ge=1)
    """Examples per environment, the first ones of its eval split (None: the whole split)."""
    rollouts_per_example: int = Field(1, ge=1)
    """Samples per example (`n` of avg@n and pass@k)."""
    pass_threshold: float = 1.0
    """A rollout passes (for pass@k) when its reward is at least this."""
    sampling: SamplingConfig = SamplingConfig()
    """Sampling parameters of the eval requests."""
    max_concurrent: int = Field(32, ge=1)
    """Examples in flight at once."""

    @model_validator(mode="after")
    def _check(self) -> OnlineEvalConfig:
        names = [e.name or e.id for e in self.env]
        if len(set(names)) != len(names):
            raise ValueError(f"environment names must be unique (set `name` on repeated ids): {names}")
        return self


class EvalClientConfig(BaseConfig):
    """The inference server: an already running one (`base_url`) or one that `eval` starts itself."""

    base_url: str | None = None
    """OpenAI-compatible base URL of a running server (e.g. `http://127.0.0.1:8000/v1`); None starts a server.
    Its `output_dir` must contain `weights_dir`, or `/update_weights` is refused."""
    api_key: str | None = None
    """Bearer token, if the server requires one."""
    timeout: float = Field(600.0, gt=0)
    """Seconds before one request times out."""
    retries: int = Field(3, ge=0)
    """Retries of a failed request (connection errors, timeouts, 5xx) before the rollout is marked errored."""
    health_timeout: float = Field(600.0, gt=0)
    """Seconds to wait for the server's `/health` at start-up."""


class EvalServerConfig(BaseConfig):
    """The inference server `eval` starts when `client.base_url` is not set (log: `output_dir/eval/inference.log`)."""

    port: int | None = Field(None, ge=1, le=65535)
    """TCP port on 127.0.0.1 (None: a free port)."""
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    """Weights and activations dtype; `auto` is bfloat16 on CUDA and float32 on CPU."""
    device: str = "auto"
    """Torch device (`auto`, `cpu`, `cuda`, `cuda:1`, ...)."""
    max_model_len: int | None = Field(None, ge=2)
    """Context length in tokens (None: the model's `max_position_embeddings`)."""
    max_batch_size: int = Field(64, ge=1)
    """Most sequences decoded together."""
    num_threads: int | None = Field(None, ge=1)
    """Torch threads of the server (None: torch's default)."""


class EvalConfig(BaseSettingsConfig):
    """Evaluates a model, and optionally every exported `weights/step_N` of a run, on environments' eval splits:
    avg@k and pass@k per environment, mean completion length, truncation; writes `output_dir/eval/results.json`."""

    model: EvalModelConfig = EvalModelConfig()
    """The base model."""
    weights_dir: Path | None = None
    """A run directory (or its `weights/` directory): every complete `weights/step_N` is evaluated in step order,
    switched in with `/update_weights` (None: the base model only)."""
    steps: list[int] | None = None
    """Evaluate only these steps of `weights_dir` (None: all complete ones)."""
    eval_base: bool = True
    """Also evaluate the base model (always on without `weights_dir`)."""
    env: list[EvalEnvConfig] = Field(default_factory=lambda: [EvalEnvConfig()], min_length=1)
    """Environments (`[[env]]` tables)."""
    num_examples: int | None = Field(None, ge=1)
    """Examples per environment, the first ones of its eval split (None: the whole split)."""
    rollouts_per_example: int = Field(1, ge=1)
    """Samples per example (`n`): avg@n is the mean reward, pass@k is reported for k = 1, 2, 4, ... and n."""
    pass_threshold: float = 1.0
    """A rollout passes (for pass@k) when its reward is at least this."""
    sampling: SamplingConfig = SamplingConfig()
    """Sampling parameters."""
    client: EvalClientConfig = EvalClientConfig()
    """Inference server connection."""
    server: EvalServerConfig = EvalServerConfig()
    """The self-started inference server (ignored with `client.base_url`)."""
    max_concurrent: int = Field(32, ge=1)
    """Examples in flight at once (each asks for `rollouts_per_example` samples)."""
    output_dir: Path = Path("outputs")
    """Where `eval/results.json` (and the self-started server's log and config) are written."""
    seed: int | None = 0
    """Seed of the sampling requests (None: unseeded)."""
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    """Log level."""

    @model_validator(mode="after")
    def _check(self) -> EvalConfig:
        names = [e.name or e.id for e in self.env]
        if len(set(names)) != len(names):
            raise ValueError(f"environment names must be unique (set `name` on repeated ids): {names}")
        if self.steps is not None and self.weights_dir is None:
            raise ValueError("`steps` needs `weights_dir`")
        return self

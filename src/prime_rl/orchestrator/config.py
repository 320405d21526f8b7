"""Orchestrator configuration: the advantage (default, custom, built-in library), selected by `[advantage] type`,
and the sections of `OrchestratorConfig` (defined in `command.py`, importable from here)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from prime_rl.utils.config import BaseConfig, type_union
from prime_rl.utils.plugins import CustomPluginConfig


class AdvantageConfig(BaseConfig):
    """Default advantage: reward minus the mean reward of its group (Dr. GRPO, no std normalisation)."""

    type: Literal["default"] = "default"
    """Advantage kind; `default` subtracts the group baseline."""
    length_weighted_mean: bool = False
    """Use the completion-length-weighted mean `sum(r*L)/sum(L)` of the group as the baseline."""


class CustomAdvantageConfig(CustomPluginConfig):
    """A user advantage `fn(inputs: AdvantageInputs, **kwargs) -> AdvantageOutputs`, called once per batch of groups."""


class GRPOAdvantageConfig(BaseConfig):
    """GRPO (Shao et al., 2024): group-mean baseline divided by the group's reward standard deviation."""

    type: Literal["grpo"] = "grpo"
    """Advantage kind; `grpo` is std-normalised."""
    eps: float = Field(1e-6, ge=0)
    """Added to the standard deviation before dividing."""


class RLOOAdvantageConfig(BaseConfig):
    """RLOO (Ahmadian et al., 2024): the baseline of a rollout is the mean reward of the other rollouts of its group."""

    type: Literal["rloo"] = "rloo"
    """Advantage kind; `rloo` is the leave-one-out baseline."""


AdvantageConfigType = type_union(AdvantageConfig, CustomAdvantageConfig, GRPOAdvantageConfig, RLOOAdvantageConfig)


# ---------------------------------------------------------------- orchestrator (`orchestrator @ orch.toml`)


class OrchestratorModelConfig(BaseConfig):
    """The policy model as the inference server names it."""

    name: str = "smollm2-135m-instruct"
    """Model name, local directory or alias; sent as `model` in requests and used to load the tokenizer."""


class EnvConfig(BaseConfig):
    """One training environment."""

    id: str = "reverse-text"
    """Built-in environment name or import path of a module exposing `load_environment(**args)`."""
    args: dict[str, Any] = Field(default_factory=dict)
    """Keyword arguments of `load_environment`."""
    weight: float = Field(1.0, gt=0)
    """Relative probability of sampling this environment's examples when several are configured."""
    name: str | None = None
    """Name in metrics and batches (default: the environment's own name); must be unique across `[[env]]` tables."""


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


class ClientConfig(BaseConfig):
    """How the orchestrator reaches the inference server(s)."""

    base_url: list[str] = Field(default_factory=lambda: ["http://127.0.0.1:8000/v1"], min_length=1)
    """OpenAI-compatible base URLs (ending in `/v1`); several servers are used round-robin."""
    api_key: str | None = None
    """Bearer token, if the servers require one."""
    timeout: float = Field(600.0, gt=0)
    """Seconds before one request times out."""
    retry_timeout: float = Field(120.0, ge=0)
    """Seconds to retry a request failing with a connection error, timeout or 5xx before the run stops (0: no retry)."""
    health_timeout: float = Field(600.0, gt=0)
    """Seconds to wait at start-up for every server's `/health`."""


class OrchestratorCkptConfig(BaseConfig):
    """Orchestrator checkpoints: progress and buffer state under `checkpoints/step_N/orchestrator/`."""

    interval: int | None = Field(None, ge=1)
    """Save every `interval` steps (and at the last step); None disables checkpoints."""
    resume_step: int | None = Field(None, ge=-1)
    """Resume from this step's checkpoint (-1: the latest complete one); None starts fresh."""
    keep_last: int | None = Field(None, ge=1)
    """Keep only the newest `keep_last` orchestrator checkpoints (None keeps all)."""


class OrchestratorLogConfig(BaseConfig):
    """Logging of the orchestrator process."""

    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    """Log level of the console and the log file."""
    file: Path | None = None
    """Also log to this file (the `rl` launcher captures the console into `logs/orchestrator.log` instead)."""


def __getattr__(name: str) -> Any:
    # `OrchestratorConfig` holds `eval.config.OnlineEvalConfig`, and `eval.config` imports `SamplingConfig` from
    # here: defining it in `command.py`, imported on first access, keeps either import order working.
    if name == "OrchestratorConfig":
        from prime_rl.orchestrator.command import OrchestratorConfig

        return OrchestratorConfig
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

"""Orchestrator configuration: the advantage (default, custom, built-in library), selected by `[advantage] type`."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from prime_rl.utils.config import BaseConfig, BaseSettingsConfig, type_union


class AdvantageConfig(BaseConfig):
    """Default advantage: reward minus the mean reward of its group (Dr. GRPO, no std normalisation)."""

    type: Literal["default"] = "default"
    """Advantage kind; `default` subtracts the group baseline."""
    length_weighted_mean: bool = False
    """Use the completion-length-weighted mean `sum(r*L)/sum(L)` of the group as the baseline."""


class CustomAdvantageConfig(BaseConfig):
    """A user advantage `fn(inputs: AdvantageInputs, **kwargs) -> AdvantageOutputs`, called once per batch of groups."""

    type: Literal["custom"] = "custom"
    """Advantage kind; `custom` imports `import_path`."""
    import_path: str
    """Import path of the function: `pkg.module.fn` or `pkg.module:fn` (the working directory is importable)."""
    kwargs: dict[str, Any] = Field(default_factory=dict)
    """Keyword arguments passed to the function after the inputs."""


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
    max_tokens: int = Field(128, ge=1)
    """Maximum completion tokens per model turn."""
    stop: list[str] | None = None
    """Stop strings ending a completion early."""


class ClientConfig(BaseConfig):
    """How the orchestrator reaches the inference server(s)."""

    base_url: list[str] = Field(default_factory=lambda: ["http://127.0.0.1:8000/v1"], min_length=1)
    """OpenAI-compatible base URLs (ending in `/v1`); several servers are used round-robin."""
    api_key: str | None = None
    """Bearer token, if the servers require one."""
    timeout: float = Field(600.0, gt=0)
    """Seconds before one request times out."""
    retries: int = Field(3, ge=0)
    """Retries of a failed request (connection errors, timeouts, 5xx) before the rollout is marked errored."""
    health_timeout: float = Field(600.0, gt=0)
    """Seconds to wait at start-up for every server's `/health`."""


class OrchestratorCkptConfig(BaseConfig):
    """Orchestrator checkpoints: progress and buffer state under `checkpoints/step_N/orchestrator/`."""

    interval: int | None = Field(None, ge=1)
    """Save every `interval` steps (and at the last step); None disables checkpoints."""
    resume_step: int | None = None
    """Resume from this step's checkpoint (-1: the latest complete one); None starts fresh."""
    keep_last: int | None = Field(None, ge=1)
    """Keep only the newest `keep_last` orchestrator checkpoints (None keeps all)."""


class OrchestratorLogConfig(BaseConfig):
    """Logging of the orchestrator process."""

    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    """Log level of the console and the log file."""
    file: Path | None = None
    """Also log to this file (the `rl` launcher captures the console into `logs/orchestrator.log` instead)."""


class OrchestratorConfig(BaseSettingsConfig):
    """Orchestrator: rollouts on the inference server(s), rewards, advantages → one batch per `rollouts/step_N`."""

    model: OrchestratorModelConfig = OrchestratorModelConfig()
    """The policy model."""
    output_dir: Path = Path("outputs")
    """Run directory shared with the trainer (rollouts, broadcasts, metrics, checkpoints)."""
    max_steps: int = Field(20, ge=1)
    """Number of training steps (batches) to produce."""
    max_async_level: int = Field(1, ge=0)
    """The batch of step N may be generated by any policy >= N - max_async_level (0: strictly on-policy)."""
    seq_len: int = Field(2048, ge=1)
    """Maximum prompt + completion tokens of a training sample; longer completions are cut."""
    batch_size: int = Field(16, ge=1)
    """Rollouts per step (a multiple of `rollouts_per_example`)."""
    rollouts_per_example: int = Field(4, ge=1)
    """Rollouts per example (the group size of the advantage baseline)."""
    env: list[EnvConfig] = Field(default_factory=lambda: [EnvConfig()], min_length=1)
    """Training environments (`[[env]]` tables); examples are drawn across them by `weight`."""
    sampling: SamplingConfig = SamplingConfig()
    """Sampling parameters."""
    client: ClientConfig = ClientConfig()
    """Inference server connection."""
    advantage: AdvantageConfigType = AdvantageConfig()
    """Advantage function (`type = "default" | "custom" | ...`)."""
    filter_zero_variance: bool = False
    """Drop groups whose advantages are all equal (no learning signal) from the batch."""
    max_concurrent: int = Field(64, ge=1)
    """Maximum rollouts in flight at once."""
    seed: int = 0
    """Seed of example sampling and of the sampling requests."""
    weights_timeout: float = Field(3600.0, gt=0)
    """Seconds to wait for a required policy's `broadcasts/step_K/STABLE` before failing."""
    ckpt: OrchestratorCkptConfig = OrchestratorCkptConfig()
    """Checkpointing and resume."""
    log: OrchestratorLogConfig = OrchestratorLogConfig()
    """Logging."""

    @model_validator(mode="after")
    def _check_batch(self) -> OrchestratorConfig:
        if self.batch_size % self.rollouts_per_example:
            raise ValueError(
                f"batch_size ({self.batch_size}) must be a multiple of "
                f"rollouts_per_example ({self.rollouts_per_example})"
            )
        names = [e.name or e.id for e in self.env]
        if len(set(names)) != len(names):
            raise ValueError(f"environment names must be unique (set `name` on repeated ids): {names}")
        return self

    @property
    def examples_per_step(self) -> int:
        return self.batch_size // self.rollouts_per_example

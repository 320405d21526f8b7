"""Orchestrator configuration: the advantage (default, custom, built-in library), selected by `[advantage] type`,
and `OrchestratorConfig`, the command config of `orchestrator @ orch.toml`."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from prime_rl.eval.config import OnlineEvalConfig
from prime_rl.utils.config import BaseConfig, BaseSettingsConfig, type_union
from prime_rl.utils.config.sections import (
    CkptConfig,
    ClientConfig,
    EnvConfig,
    LogConfig,
    ModelConfig,
    SamplingConfig,
    WandbConfig,
    env_tables,
)
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


class DifficultyConfig(BaseConfig):
    """Online difficulty filtering: an example whose recent mean reward reaches `easy_threshold` moves to the easy
    pool, one at or below `hard_threshold` to the hard pool; steps draw the given fractions from those pools and the
    rest from the normal examples (`orchestrator/difficulty.py`)."""

    easy_threshold: float = 1.0
    """An example whose recent mean reward is >= this is easy."""
    hard_threshold: float = 0.0
    """An example whose recent mean reward is <= this is hard."""
    easy_fraction: float = Field(0.0, ge=0, le=1)
    """Share of each step's examples drawn from the easy pool (0: easy examples are not drawn again)."""
    hard_fraction: float = Field(0.0, ge=0, le=1)
    """Share of each step's examples drawn from the hard pool (0: hard examples are not drawn again)."""
    window: int = Field(1, ge=1)
    """Recent reward of an example: the mean reward of its last `window` groups."""

    @model_validator(mode="after")
    def _check(self) -> DifficultyConfig:
        if self.hard_threshold >= self.easy_threshold:
            raise ValueError(
                f"hard_threshold ({self.hard_threshold}) must be below easy_threshold ({self.easy_threshold})"
            )
        if self.easy_fraction + self.hard_fraction > 1:
            raise ValueError(f"easy_fraction + hard_fraction ({self.easy_fraction + self.hard_fraction}) exceeds 1")
        return self


class TeacherConfig(BaseConfig):
    """On-policy distillation: a teacher on its own inference server scores every sample's completion tokens
    (`POST /v1/logprobs`), and the batch carries them as `teacher_logprobs` (`orchestrator/teacher.py`)."""

    model: ModelConfig
    """The teacher model; `model.name` is sent with every request (the server refuses another name). It must use the
    policy's tokenizer: token ids are scored as they are."""
    client: ClientConfig
    """The teacher server(s): `client.base_url` is required (under `rl`, derived from `[teacher]`)."""
    temperature: float = Field(1.0, gt=0)
    """The teacher's logits are divided by this before `log_softmax`; 1 is the teacher's own distribution."""

    @model_validator(mode="after")
    def _check_url(self) -> TeacherConfig:
        # ClientConfig's default URL is the policy server's: a teacher defaulting to it would distil the policy
        # into itself without a word.
        if "base_url" not in self.client.model_fields_set:
            raise ValueError("client.base_url (the teacher server's URL) is required")
        return self


class OrchestratorEnvConfig(EnvConfig):
    """One training environment."""

    weight: float = Field(1.0, gt=0)
    """Relative probability of sampling this environment's examples when several are configured."""


class OrchestratorWandbConfig(WandbConfig):
    """W&B logging of the orchestrator: the shared run, plus a table of sample rollouts."""

    samples_interval: int = Field(10, ge=0)
    """Log a table of sample rollouts (prompt, completion, reward) every this many steps (0: never)."""
    samples_per_step: int = Field(8, ge=1)
    """Rollouts in each sample table (the first ones of the step's batch)."""


class OrchestratorConfig(BaseSettingsConfig):
    """Orchestrator: rollouts on the inference server(s), rewards, advantages → one batch per `rollouts/step_N`."""

    model: ModelConfig = ModelConfig()
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
    env: env_tables(OrchestratorEnvConfig) = Field(default_factory=lambda: [OrchestratorEnvConfig()], min_length=1)
    """Training environments (`[[env]]` tables); examples are drawn across them by `weight`."""
    sampling: SamplingConfig = SamplingConfig()
    """Sampling parameters."""
    client: ClientConfig = ClientConfig()
    """Inference server connection."""
    advantage: AdvantageConfigType = AdvantageConfig()
    """Advantage function (`type = "default" | "custom" | ...`)."""
    filter_zero_variance: bool = False
    """Drop groups whose advantages are all equal (no learning signal) from the batch."""
    refill_zero_advantage: bool = False
    """Replace groups whose rewards are all equal (zero advantage) by freshly generated ones, so the batch holds
    `batch_size` samples with signal (`orchestrator/refill.py`)."""
    max_refill_groups: int = Field(16, ge=0)
    """Extra groups generated per step at most when refilling; then the batch is completed with zero-advantage
    groups and a warning is logged."""
    difficulty: DifficultyConfig | None = None
    """Online difficulty filtering by recent per-example reward (`[orchestrator.difficulty]`; None: off)."""
    max_concurrent: int = Field(64, ge=1)
    """Maximum rollouts in flight at once."""
    seed: int = 0
    """Seed of example sampling and of the sampling requests."""
    weights_timeout: float = Field(3600.0, gt=0)
    """Seconds to wait for a required policy's `broadcasts/step_K/STABLE` before failing."""
    ckpt: CkptConfig = CkptConfig()
    """Checkpointing (`checkpoints/step_N/orchestrator/`: progress and buffer) and resume."""
    teacher: TeacherConfig | None = None
    """A teacher whose logprobs of the completion tokens travel in the batch (`[orchestrator.teacher]`; None: off)."""
    eval: OnlineEvalConfig | None = None
    """Periodic evaluation of the served policy on eval splits (`[orchestrator.eval]`), logged as `eval/...`."""
    log: LogConfig = LogConfig(file=False)
    """Logging."""
    wandb: OrchestratorWandbConfig | None = None
    """Weights & Biases logging of the metrics under `orchestrator/...` (None: off)."""

    @model_validator(mode="after")
    def _check_batch(self) -> OrchestratorConfig:
        if self.batch_size % self.rollouts_per_example:
            raise ValueError(
                f"batch_size ({self.batch_size}) must be a multiple of "
                f"rollouts_per_example ({self.rollouts_per_example})"
            )
        return self

    @property
    def examples_per_step(self) -> int:
        return self.batch_size // self.rollouts_per_example

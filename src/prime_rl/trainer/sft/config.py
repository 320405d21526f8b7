"""`SFTConfig`: supervised fine-tuning on chat data, reusing the RL trainer's model/optim/scheduler/ckpt sections.

No torch import here: configs are parsed (and `--help` answered) before any heavy import.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from prime_rl.trainer.config import (
    AdamWConfig,
    CheckpointConfig,
    ConstantSchedulerConfig,
    LogConfig,
    ModelConfig,
    OptimizerConfigType,
    SchedulerConfigType,
    WeightsConfig,
)
from prime_rl.utils.config import BaseConfig, BaseSettingsConfig, type_union


class JSONLDataConfig(BaseConfig):
    """Chat data from a JSONL file: one `{"messages": [...]}` or `{"prompt": [...], "completion": [...]}` per line."""

    type: Literal["default"] = "default"
    """Data source; `default` reads `path`."""
    path: Path
    """JSONL file. `messages`: every assistant message is trained on; `prompt`/`completion`: the completion's
    assistant messages only. A string prompt (completion) is one user (assistant) message."""

    @field_validator("path")
    @classmethod
    def _exists(cls, path: Path) -> Path:
        if not path.is_file():
            raise ValueError(f"data file `{path}` not found")
        return path


class EnvironmentDataConfig(BaseConfig):
    """Prompts of an environment's dataset, each completed by its reference answer."""

    type: Literal["environment"] = "environment"
    """Data source; `environment` builds the examples with `load_environment(id, **args)`."""
    id: str = "reverse-text"
    """Built-in environment name or import path of a module exposing `load_environment(**args)`."""
    args: dict[str, Any] = Field(default_factory=dict)
    """Keyword arguments of `load_environment`."""
    split: Literal["train", "eval"] = "train"
    """Which split of the environment to train on."""
    completion_format: str | None = None
    """Assistant reply built from the example's answer (`{answer}` is replaced); None uses the environment's
    `reference_completion(example)` (e.g. `<answer>{answer}</answer>` for `reverse-text`), else the bare answer."""

    @field_validator("completion_format")
    @classmethod
    def _has_answer(cls, value: str | None) -> str | None:
        if value is not None and "{answer}" not in value:
            raise ValueError("must contain `{answer}` (replaced by the example's answer)")
        return value


SFTDataConfigType = type_union(JSONLDataConfig, EnvironmentDataConfig)


class SFTConfig(BaseSettingsConfig):
    """SFT trainer: cross-entropy on assistant tokens of chat data; exports HF weights that `rl` can start from."""

    model: ModelConfig = ModelConfig()
    """The model to fine-tune."""
    data: SFTDataConfigType
    """Training data (`type`: default (JSONL file) | environment)."""
    output_dir: Path = Path("outputs/sft")
    """Run directory: `weights/step_N/` (HF export), `checkpoints/`, `metrics/sft.jsonl`, `logs/sft.log`."""
    max_steps: int = Field(100, ge=1)
    """Number of optimizer steps."""
    batch_size: int = Field(8, ge=1)
    """Conversations per optimizer step (cycling through the data in seeded shuffled epochs)."""
    seq_len: int = Field(2048, ge=1)
    """Token budget of one packed micro-batch; longer conversations are truncated to it."""
    shuffle: bool = True
    """Shuffle the conversations every epoch (seeded by `seed` and the epoch)."""
    optim: OptimizerConfigType = AdamWConfig(lr=1e-5)
    """Optimizer (`type`: adamw | sgd)."""
    scheduler: SchedulerConfigType = ConstantSchedulerConfig()
    """Learning-rate schedule (`type`: constant | linear | cosine)."""
    ckpt: CheckpointConfig = CheckpointConfig()
    """Checkpointing and resume."""
    weights: WeightsConfig = WeightsConfig()
    """HF-format weight export (`weights/step_N/`, loadable by `from_pretrained` and by `rl --model.name`)."""
    num_threads: int | None = Field(None, ge=1)
    """Torch CPU threads (None: torch's default)."""
    log: LogConfig = LogConfig()
    """Logging."""
    seed: int = 0
    """Seed of torch and of the data order."""
    on_nonfinite: Literal["stop", "skip"] = "stop"
    """A NaN/inf loss or gradient norm: `stop` fails naming the step; `skip` skips the optimizer step and counts it."""

    @model_validator(mode="after")
    def _check_steps(self) -> SFTConfig:
        if self.scheduler.warmup_steps > self.max_steps:
            raise ValueError(
                f"scheduler.warmup_steps ({self.scheduler.warmup_steps}) exceeds max_steps ({self.max_steps})"
            )
        return self

"""`SFTConfig`: supervised fine-tuning on chat data; a `BaseTrainerConfig` with its own data, steps and batch size.

No torch import here: configs are parsed (and `--help` answered) before any heavy import.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator

from prime_rl.trainer.config import AdamWConfig, BaseTrainerConfig, OptimizerConfigType
from prime_rl.utils.config import BaseConfig, type_union


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


class HFDataConfig(BaseConfig):
    """Chat data from the Hugging Face `datasets` library, columns mapped to prime-rl's chat formats."""

    type: Literal["hf"] = "hf"
    """Data source; `hf` reads `path` with `datasets` (docs/integrations.md)."""
    path: str
    """A `save_to_disk` directory, a local .json/.jsonl/.parquet/.arrow/.csv file (or a directory of them), or a hub
    id (the Hub must be reachable)."""
    split: str = "train"
    """Split to read (a single file is its own `train` split)."""
    subset: str | None = None
    """Hub dataset configuration name (hub ids only)."""
    messages_column: str = "messages"
    """Column of whole conversations (every assistant message is trained on); used when the dataset has it."""
    prompt_column: str = "prompt"
    """Column of prompts (a string is one user message), used without a messages column."""
    completion_column: str = "completion"
    """Column of completions (a string is one assistant message) trained on after the prompt."""
    answer_column: str = "answer"
    """Without a completion column: this column's text is the assistant reply."""
    max_examples: int | None = Field(None, ge=1)
    """Use only the first this many rows (None: all)."""


SFTDataConfigType = type_union(JSONLDataConfig, EnvironmentDataConfig, HFDataConfig)


class SFTConfig(BaseTrainerConfig):
    """SFT trainer: cross-entropy on assistant tokens of chat data; exports HF weights that `rl` can start from."""

    data: SFTDataConfigType
    """Training data (`type`: default (JSONL file) | environment | hf (`datasets`))."""
    output_dir: Path = Path("outputs/sft")
    """Run directory: `weights/step_N/` (HF export), `checkpoints/`, `metrics/sft.jsonl`, `logs/sft.log`."""
    max_steps: int = Field(100, ge=1)
    """Number of optimizer steps."""
    batch_size: int = Field(8, ge=1)
    """Conversations per optimizer step (cycling through the data in seeded shuffled epochs)."""
    shuffle: bool = True
    """Shuffle the conversations every epoch (seeded by `seed` and the epoch)."""
    optim: OptimizerConfigType = AdamWConfig(lr=1e-5)
    """Optimizer (`type`: adamw | sgd)."""

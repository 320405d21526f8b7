"""Trainer config sections shared by the RL and SFT trainers: model, optimizer, scheduler, checkpoints, exports.

No torch import here: configs are parsed (and `--help` answered) before any heavy import.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from prime_rl.utils.config import BaseConfig, type_union


class ModelConfig(BaseConfig):
    """The causal LM to train."""

    name: str = "smollm2-135m-instruct"
    """Hugging Face hub id, local directory, or the built-in alias `smollm2-135m-instruct`."""
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    """Parameter dtype; `auto` is float32 on CPU and bfloat16 on CUDA."""
    device: str = "auto"
    """Torch device (`auto`: CUDA when available, else CPU)."""
    attn_implementation: Literal["varlen", "sdpa", "eager", "flash_attention_2"] = "varlen"
    """`varlen` runs SDPA per packed sample (exact, no cross-sample work); `sdpa`/`eager` use a block-diagonal mask."""
    cache_dir: Path | None = None
    """Where the built-in alias is converted and cached (default `~/.cache/prime-rl` or `$PRIME_RL_CACHE`)."""
    trust_remote_code: bool = False
    """Allow model code from the hub repository."""
    logprob_chunk_size: int = Field(default=1024, ge=1)
    """Tokens per chunk when computing logprobs over the vocabulary (bounds the [tokens, vocab] memory)."""


class AdamWConfig(BaseConfig):
    """AdamW with gradient-norm clipping."""

    type: Literal["adamw"] = "adamw"
    lr: float = Field(default=1e-6, gt=0)
    """Peak learning rate."""
    weight_decay: float = Field(default=0.01, ge=0)
    """Decoupled weight decay."""
    betas: tuple[float, float] = (0.9, 0.999)
    """Adam beta1 and beta2."""
    eps: float = Field(default=1e-8, gt=0)
    """Adam epsilon."""
    max_norm: float | None = Field(default=1.0, gt=0)
    """Clip the global gradient norm to this value (None: no clipping, the norm is still logged)."""


class SGDConfig(BaseConfig):
    """SGD with momentum and gradient-norm clipping."""

    type: Literal["sgd"] = "sgd"
    lr: float = Field(default=1e-6, gt=0)
    """Peak learning rate."""
    weight_decay: float = Field(default=0.0, ge=0)
    """L2 weight decay."""
    momentum: float = Field(default=0.9, ge=0)
    """Momentum factor."""
    nesterov: bool = True
    """Nesterov momentum."""
    max_norm: float | None = Field(default=1.0, gt=0)
    """Clip the global gradient norm to this value (None: no clipping, the norm is still logged)."""


OptimizerConfigType = type_union(AdamWConfig, SGDConfig, default="adamw")


class ConstantSchedulerConfig(BaseConfig):
    """Constant learning rate after an optional linear warmup."""

    type: Literal["constant"] = "constant"
    warmup_steps: int = Field(default=0, ge=0)
    """Steps of linear warmup from 0 to the peak learning rate."""


class LinearSchedulerConfig(BaseConfig):
    """Warmup, then constant, then linear decay to `min_lr` over the last `decay_steps` (all of the rest if None)."""

    type: Literal["linear"] = "linear"
    warmup_steps: int = Field(default=0, ge=0)
    """Steps of linear warmup from 0 to the peak learning rate."""
    decay_steps: int | None = Field(default=None, ge=1)
    """Length of the final linear decay (None: decay from the end of warmup to `max_steps`)."""
    min_lr: float = Field(default=0.0, ge=0)
    """Learning rate reached at the last step."""


class CosineSchedulerConfig(BaseConfig):
    """Linear warmup, then cosine decay to `min_lr` at `max_steps`."""

    type: Literal["cosine"] = "cosine"
    warmup_steps: int = Field(default=0, ge=0)
    """Steps of linear warmup from 0 to the peak learning rate."""
    min_lr: float = Field(default=0.0, ge=0)
    """Learning rate reached at the last step."""


SchedulerConfigType = type_union(
    ConstantSchedulerConfig, LinearSchedulerConfig, CosineSchedulerConfig, default="constant"
)


class CheckpointConfig(BaseConfig):
    """Full trainer state (model, optimizer, scheduler, step) under `checkpoints/step_N/trainer/`."""

    interval: int | None = Field(default=None, ge=1)
    """Save every this many steps and after the last step (None: no checkpoints)."""
    resume_step: int | None = Field(default=None, ge=-1)
    """Resume from this checkpoint step (-1: the latest complete one; None: start fresh)."""
    keep_last: int | None = Field(default=None, ge=1)
    """Keep only the newest this many trainer checkpoints (None: keep all)."""


class WeightsConfig(BaseConfig):
    """HF-format export (`from_pretrained`-loadable, with tokenizer) under `weights/step_N/`."""

    interval: int | None = Field(default=None, ge=1)
    """Export every this many steps (None: only at the end)."""
    final: bool = True
    """Export after the last step."""


class LogConfig(BaseConfig):
    """Console and file logging."""

    level: Literal["debug", "info", "warning", "error"] = "info"
    """Log level."""
    file: bool = True
    """Also log to `output_dir/logs/<process>.log`."""

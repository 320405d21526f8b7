"""What the RL and SFT trainers share: `BaseTrainerConfig` and its model, optimizer, scheduler and export sections.

No torch import here: configs are parsed (and `--help` answered) before any heavy import.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from prime_rl.utils.config import BaseConfig, BaseSettingsConfig, type_union
from prime_rl.utils.config.sections import CkptConfig, LoadedModelConfig, LogConfig, WandbConfig


class LoRAConfig(BaseConfig):
    """LoRA adapters (peft's `LoraConfig`): only the adapters train, broadcasts and exports carry only them
    (docs/integrations.md). peft's names: `rank` is `r`, `alpha` is `lora_alpha`, `dropout` is `lora_dropout`."""

    rank: int = Field(default=16, ge=1)
    """Rank r of each adapter (A: r x in_features, B: out_features x r)."""
    alpha: float = Field(default=32.0, gt=0)
    """Scaling numerator: the adapter adds (alpha / rank) * B @ A to each target weight."""
    dropout: float = Field(default=0.0, ge=0, lt=1)
    """Dropout on the adapter's input during training (0: the trainer's forward equals the served merged weights)."""
    target_modules: list[str] | Literal["all-linear"] = "all-linear"
    """Module names (or name suffixes) to adapt, as peft matches them, e.g. ["q_proj", "v_proj"]; `all-linear`: every
    linear layer except the output head."""
    export_merged: bool = False
    """Also write merged HF weights (base + scaled B @ A) to `weights/step_N/merged/` beside the adapter."""

    @field_validator("target_modules")
    @classmethod
    def _not_empty(cls, value: list[str] | str) -> list[str] | str:
        if isinstance(value, list) and (not value or any(not name for name in value)):
            raise ValueError("must name at least one module, and no empty name")
        return value


class TrainerModelConfig(LoadedModelConfig):
    """The causal LM to train."""

    attn_implementation: Literal["varlen", "sdpa", "eager", "flash_attention_2"] = "varlen"
    """`varlen` runs SDPA per packed sample (exact, no cross-sample work); `sdpa`/`eager` use a block-diagonal mask."""
    cache_dir: Path | None = None
    """Where the built-in alias is converted and cached (default `~/.cache/prime-rl` or `$PRIME_RL_CACHE`)."""
    trust_remote_code: bool = False
    """Allow model code from the hub repository."""
    logprob_chunk_size: int = Field(default=1024, ge=1)
    """Tokens per chunk when computing logprobs over the vocabulary (bounds the [tokens, vocab] memory)."""
    lora: LoRAConfig | None = None
    """Train LoRA adapters instead of all weights (`[model.lora]`; None: full fine-tuning)."""
    lean_mlp: bool = False
    """The MLP backward recomputes `silu(gate) * up` instead of saving it (`trainer/lean_mlp.py`, bit-identical
    gradients): two [tokens, intermediate] tensors fewer per layer, 0.05-0.15 GiB of `make run`'s peak, for 3-8 %
    more trainer CPU per step on SmolLM2 (docs/rl.md#memory)."""


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
    fused: bool = True
    """One fused kernel per parameter (several times faster on CPU than `false`, torch's multi-tensor `foreach`
    AdamW; the two agree to float rounding, docs/trainer.md)."""


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


class WeightsConfig(BaseConfig):
    """HF-format export (`from_pretrained`-loadable, with tokenizer) under `weights/step_N/`."""

    interval: int | None = Field(default=None, ge=1)
    """Export every this many steps (None: only at the end)."""
    final: bool = True
    """Export after the last step."""


class ParallelConfig(BaseConfig):
    """FSDP2 data parallelism when the trainer runs under `torchrun` (docs/scaling.md); in one plain process only
    `activation_checkpointing` applies."""

    shard_size: int | None = Field(default=None, ge=1)
    """Ranks each parameter is sharded over (None: all ranks); a divisor of the world size replicates the shards
    (HSDP: world size / shard_size replicas of shard_size ranks each)."""
    reshard_after_forward: bool = True
    """Free each decoder layer's gathered parameters after its forward (gathered again in the backward): less memory,
    one more all-gather per layer."""
    activation_checkpointing: bool = False
    """Recompute each decoder layer's activations in the backward instead of storing them (also without torchrun)."""
    cpu_offload: bool = False
    """CUDA only: keep sharded parameters, gradients and optimizer state in CPU memory (FSDP2 `CPUOffloadPolicy`)."""
    mixed_precision: Literal["none", "bfloat16"] = "none"
    """CUDA only: `bfloat16` computes in bfloat16 and reduces gradients in float32 (FSDP2 `MixedPrecisionPolicy`);
    combine with `model.dtype = "float32"` to keep float32 master weights."""


def rank_threads(num_threads: int | None, ranks_on_machine: int) -> int | None:
    """A trainer's `num_threads` shared by its ranks on one machine (at least one each; None stays None)."""
    if num_threads is None or ranks_on_machine <= 1:
        return num_threads
    return max(1, num_threads // ranks_on_machine)


class BaseTrainerConfig(BaseSettingsConfig):
    """What the RL and the SFT trainer share: the model, optimizer, schedule, checkpoints, exports and logging."""

    model: TrainerModelConfig = TrainerModelConfig()
    """The model to train."""
    output_dir: Path = Path("outputs")
    """Run directory (batches, broadcasts, checkpoints, weights, metrics, logs)."""
    max_steps: int | None = Field(None, ge=0)
    """Number of training steps (None: until stopped)."""
    seq_len: int = Field(2048, ge=1)
    """Token budget of one packed micro-batch; longer samples are truncated to it."""
    optim: OptimizerConfigType = AdamWConfig()
    """Optimizer (`type`: adamw | sgd)."""
    scheduler: SchedulerConfigType = ConstantSchedulerConfig()
    """Learning-rate schedule (`type`: constant | linear | cosine)."""
    ckpt: CkptConfig = CkptConfig()
    """Checkpointing (`checkpoints/step_N/trainer/`: model, optimizer, scheduler, step) and resume."""
    weights: WeightsConfig = WeightsConfig()
    """HF-format export (`weights/step_N/`, loadable by `from_pretrained` and by `rl --model.name`)."""
    num_threads: int | None = Field(None, ge=1)
    """Torch CPU threads of the trainer, shared by its ranks on one machine (None: the cores this process may run
    on: affinity mask, cgroup quota). More than those cores is warned about (docs/scaling.md, Threads)."""
    parallel: ParallelConfig = ParallelConfig()
    """FSDP2 data parallelism under torchrun (docs/scaling.md)."""
    log: LogConfig = LogConfig(file=True)
    """Logging (`logs/trainer.log`, `logs/sft.log`)."""
    seed: int = 0
    """Seed of torch and of the data (SFT order, fake RL batches)."""
    on_nonfinite: Literal["stop", "skip"] = "stop"
    """A NaN/inf loss or gradient norm: `stop` fails naming the step; `skip` skips the optimizer step and counts it."""
    wandb: WandbConfig | None = None
    """Weights & Biases logging of the metrics under `trainer/...` (`sft/...`) (None: off)."""

    @model_validator(mode="after")
    def _check_warmup(self) -> BaseTrainerConfig:
        if self.max_steps is not None and self.scheduler.warmup_steps > self.max_steps:
            raise ValueError(
                f"scheduler.warmup_steps ({self.scheduler.warmup_steps}) exceeds max_steps ({self.max_steps})"
            )
        return self

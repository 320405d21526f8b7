"""RL trainer configuration: the loss (default, custom, and the built-in library), selected by `[loss] type`."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from prime_rl.trainer.config import BaseTrainerConfig
from prime_rl.utils.config import BaseConfig, type_union
from prime_rl.utils.plugins import CustomPluginConfig


class LossConfig(BaseConfig):
    """Default loss: masked importance sampling against the inference policy (architecture.md §4)."""

    type: Literal["default"] = "default"
    """Loss kind; `default` is masked importance sampling."""
    ratio_type: Literal["token", "sequence"] = "token"
    """Importance weight per token (`token`) or one clipped weight per sequence (`sequence`)."""
    token_mask_low: float = Field(0.125, ge=0)
    """Mask tokens whose importance ratio is below this."""
    token_mask_high: float = Field(8.0, ge=0)
    """Mask tokens whose importance ratio is above this."""
    geo_mask_low: float = Field(0.1, ge=0)
    """Mask the whole sequence when the geometric mean ratio over its loss tokens is below this."""
    geo_mask_high: float = Field(10.0, ge=0)
    """Mask the whole sequence when the geometric mean ratio over its loss tokens is above this."""
    sequence_mask_low: float = Field(0.0, ge=0)
    """Mask the whole sequence when any of its loss tokens has a ratio below this."""
    sequence_mask_high: float = Field(100.0, ge=0)
    """Mask the whole sequence when any of its loss tokens has a ratio above this."""
    sequence_clip_high: float = Field(10.0, ge=0)
    """Upper clip of the sequence importance weight (only with `ratio_type = "sequence"`)."""
    adv_tau: float = Field(1.0, ge=0)
    """Scale of the advantages."""
    teacher_tau: float = Field(0.0, ge=0)
    """Weight of the teacher term `teacher_lp - trainer_lp` added to the advantages; > 0 needs
    `[orchestrator.teacher]` (docs/algorithms.md, "Teacher / on-policy distillation")."""
    kl_tau: float = Field(0.0, ge=0)
    """Weight of the KL penalty to the inference policy."""

    @model_validator(mode="after")
    def _check_bounds(self) -> LossConfig:
        for name in ("token_mask", "geo_mask", "sequence_mask"):
            low, high = getattr(self, f"{name}_low"), getattr(self, f"{name}_high")
            if low >= high:
                raise ValueError(f"{name}_low ({low}) must be less than {name}_high ({high})")
        return self


class CustomLossConfig(CustomPluginConfig):
    """A user loss `fn(inputs: LossInputs, **kwargs) -> LossOutputs`, called once per sequence."""


class PPOClipLossConfig(BaseConfig):
    """PPO clipped surrogate (Schulman et al., 2017) against the inference policy."""

    type: Literal["ppo_clip"] = "ppo_clip"
    """Loss kind; `ppo_clip` is the PPO clipped surrogate."""
    clip_eps: float = Field(0.2, gt=0)
    """The ratio is clipped to `[1 - clip_eps, 1 + clip_eps]`."""


class GSPOLossConfig(BaseConfig):
    """GSPO (Zheng et al., 2025): clipped surrogate on the length-normalised sequence ratio."""

    type: Literal["gspo"] = "gspo"
    """Loss kind; `gspo` is Group Sequence Policy Optimization."""
    clip_eps_low: float = Field(3e-4, gt=0)
    """The sequence ratio is clipped below at `1 - clip_eps_low`."""
    clip_eps_high: float = Field(4e-4, gt=0)
    """The sequence ratio is clipped above at `1 + clip_eps_high`."""


class CISPOLossConfig(BaseConfig):
    """CISPO (MiniMax-M1, 2025): policy gradient weighted by the clipped, stop-gradient importance ratio."""

    type: Literal["cispo"] = "cispo"
    """Loss kind; `cispo` is Clipped IS-weight Policy Optimization."""
    clip_eps_low: float = Field(1.0, gt=0)
    """The weight is clipped below at `1 - clip_eps_low` (1.0: no lower clip, as in the paper)."""
    clip_eps_high: float = Field(0.28, gt=0)
    """The weight is clipped above at `1 + clip_eps_high`."""


class ReinforceLossConfig(BaseConfig):
    """REINFORCE (Williams, 1992) with an importance ratio to the inference policy, no clipping or masking."""

    type: Literal["reinforce"] = "reinforce"
    """Loss kind; `reinforce` is the importance-weighted policy gradient."""


LossConfigType = type_union(
    LossConfig, CustomLossConfig, PPOClipLossConfig, GSPOLossConfig, CISPOLossConfig, ReinforceLossConfig
)


# ---------------------------------------------------------------- RL trainer (command config)


class DataConfig(BaseConfig):
    """Where the trainer's batches come from: the orchestrator (filesystem transport) or random fake data."""

    fake: bool = False
    """Generate random batches instead of reading `rollouts/step_N` (debugging, benchmarks)."""
    fake_batch_size: int = Field(8, ge=1)
    """Fake data: samples per step."""
    fake_prompt_len: int = Field(32, ge=1)
    """Fake data: prompt tokens per sample."""
    fake_completion_len: int = Field(96, ge=1)
    """Fake data: completion tokens per sample."""
    timeout: float | None = Field(None, gt=0)
    """Seconds to wait for a step's batch before failing (None: wait forever)."""


class RLTrainerConfig(BaseTrainerConfig):
    """RL trainer: trains on `rollouts/step_N` and writes the next policy to `broadcasts/step_{N+1}`."""

    max_async_level: int = Field(1, ge=0)
    """Refuse samples generated by a policy older than `step - max_async_level`; also the broadcasts kept (+1)."""
    share_prompts: bool = True
    """Run a prompt shared by several samples (a group's rollouts) once, its completions packed after it (exact: same
    logprobs and gradients; `varlen` attention only, other implementations pack every sample whole)."""
    loss: LossConfigType = LossConfig()
    """Loss (`type`: default | custom | built-in)."""
    data: DataConfig = DataConfig()
    """Batch source."""
    num_processes: int = Field(1, ge=1)
    """Trainer ranks `rl` starts on this machine under `torchrun --nproc-per-node` (one per GPU); 1 runs one plain
    process. Unused when you start `trainer` yourself (torchrun then decides)."""

    @property
    def needs_teacher(self) -> bool:
        """Whether every batch must carry teacher logprobs (the default loss with `teacher_tau > 0`)."""
        return isinstance(self.loss, LossConfig) and self.loss.teacher_tau > 0

    @property
    def packs_shared_prompts(self) -> bool:
        """`share_prompts` where it applies (`varlen` attention); the trainer and the reference loop pack alike."""
        return self.share_prompts and self.model.attn_implementation == "varlen"

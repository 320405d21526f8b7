"""Orchestrator configuration: the advantage (default, custom, built-in library), selected by `[advantage] type`."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from prime_rl.utils.config import BaseConfig, type_union


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

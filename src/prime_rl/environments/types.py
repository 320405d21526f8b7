"""The data environments deal in (architecture.md §5, §7): dataset `Example`s, the `SamplingConfig` of a
request, and the `Rollout` of an episode with one `Turn` per model call. No behaviour: every module may import it."""

from __future__ import annotations

from dataclasses import dataclass, field

from prime_rl.utils.config.sections import SamplingConfig

__all__ = ["Example", "Rollout", "SamplingConfig", "Turn"]


@dataclass
class Example:
    """One dataset row: a chat prompt and what the rubric needs to score a completion of it."""

    example_id: int
    prompt: list[dict]
    answer: str = ""
    info: dict = field(default_factory=dict)


@dataclass
class Turn:
    """One model call of a rollout, with the exact tokens the model saw and sampled."""

    prompt_ids: list[int]
    completion_ids: list[int]
    completion_logprobs: list[float]
    completion_mask: list[bool]
    temperature: float
    policy_step: int
    finish_reason: str


@dataclass
class Rollout:
    """A finished (possibly multi-turn) episode; `error` is set when generation or scoring failed."""

    example_id: int
    env_name: str
    prompt: list[dict]
    completion: list[dict]
    turns: list[Turn]
    reward: float = 0.0
    metrics: dict[str, float] = field(default_factory=dict)
    is_truncated: bool = False
    error: str | None = None

    @property
    def completion_length(self) -> int:
        """Model tokens of the rollout (environment tokens between turns excluded): what "completion length" means
        in advantages, metrics and eval."""
        return sum(sum(turn.completion_mask) for turn in self.turns)

"""Online difficulty filtering: each example's recent mean reward puts it in the easy, hard or normal pool.

The buffer draws `easy_fraction` / `hard_fraction` of every step's examples from the easy / hard pool and the rest
from the normal examples. Fractions are met exactly over time: each step adds `num_examples * fraction` to a credit
and draws its whole part (draws a pool cannot serve are taken from the normal examples and not owed later).
"""

from __future__ import annotations

import math
from typing import Any, Literal

from prime_rl.orchestrator.batch import Group, baseline_rewards
from prime_rl.orchestrator.config import DifficultyConfig

Pool = Literal["easy", "hard", "normal"]
Key = tuple[str, int]
"""`(env name, example_id)`."""


class DifficultyPools:
    """Recent per-example rewards, the pool each example is in, and the credit of the easy and hard draws."""

    def __init__(self, config: DifficultyConfig):
        self.config = config
        self.recent: dict[Key, list[float]] = {}
        self.credit: dict[str, float] = {"easy": 0.0, "hard": 0.0}

    def pool(self, key: Key) -> Pool:
        rewards = self.recent.get(key)
        if not rewards:
            return "normal"
        mean = sum(rewards) / len(rewards)
        if mean >= self.config.easy_threshold:
            return "easy"
        return "hard" if mean <= self.config.hard_threshold else "normal"

    def members(self, pool: Pool) -> list[Key]:
        """The examples with a reward history in `pool`, sorted (a fixed order for seeded draws)."""
        return sorted(key for key in self.recent if self.pool(key) == pool)

    def sizes(self) -> dict[str, int]:
        pools = [self.pool(key) for key in self.recent]
        return {name: pools.count(name) for name in ("easy", "hard", "normal")}

    def update(self, groups: list[Group]) -> None:
        """Appends each group's mean reward (errored rollouts as in the advantage baseline) to its example's
        history, keeping the last `window`."""
        for group in groups:
            rewards = baseline_rewards(group.rollouts)
            history = self.recent.setdefault((group.env_name, group.example.example_id), [])
            history.append(sum(rewards) / len(rewards))
            del history[: -self.config.window]

    def draw_counts(self, num_examples: int, available: dict[str, int]) -> dict[str, int]:
        """How many of `num_examples` come from the easy and the hard pool (at most `available[pool]` each)."""
        fractions = {"easy": self.config.easy_fraction, "hard": self.config.hard_fraction}
        counts = {}
        for pool, fraction in fractions.items():
            self.credit[pool] += num_examples * fraction
            owed = math.floor(self.credit[pool] + 1e-9)  # 0.1 * 10 must give 1, not 0.999...
            self.credit[pool] -= owed
            counts[pool] = min(owed, available[pool], num_examples - sum(counts.values()))
        return counts

    def state_dict(self) -> dict[str, Any]:
        return {
            "recent": [[env, example_id, list(r)] for (env, example_id), r in sorted(self.recent.items())],
            "credit": dict(self.credit),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.recent = {(env, int(example_id)): [float(x) for x in r] for env, example_id, r in state["recent"]}
        self.credit = {pool: float(state["credit"][pool]) for pool in ("easy", "hard")}

"""Which examples each step trains on: weighted choice of environment, then a seeded pass over its dataset.

Within one environment, examples are drawn without replacement from a shuffled order; a new shuffle starts when
the dataset is exhausted (an epoch). The whole state (RNG and positions) is saved in orchestrator checkpoints.
"""

from __future__ import annotations

import random
from typing import Any

from prime_rl.environments.types import Example


class ExampleBuffer:
    """Samples `(env_name, example)` pairs; environments are chosen with probability proportional to their weight."""

    def __init__(self, datasets: dict[str, list[Example]], weights: dict[str, float], seed: int = 0):
        empty = [name for name, examples in datasets.items() if not examples]
        if empty:
            raise ValueError(f"environment(s) {empty} have an empty dataset")
        if set(weights) != set(datasets):
            raise ValueError(f"weights {sorted(weights)} do not match environments {sorted(datasets)}")
        self.datasets = datasets
        self.names = list(datasets)
        self.weights = [weights[name] for name in self.names]
        self.rng = random.Random(seed)
        self.order: dict[str, list[int]] = {name: [] for name in self.names}
        self.position: dict[str, int] = dict.fromkeys(self.names, 0)
        self.epoch: dict[str, int] = dict.fromkeys(self.names, 0)

    def _next_index(self, name: str) -> int:
        if self.position[name] >= len(self.order[name]):
            order = list(range(len(self.datasets[name])))
            self.rng.shuffle(order)
            self.order[name], self.position[name] = order, 0
            self.epoch[name] += 1
        index = self.order[name][self.position[name]]
        self.position[name] += 1
        return index

    def sample(self, num_examples: int) -> list[tuple[str, Example]]:
        """`num_examples` examples for one step, in the order their groups will appear in the batch."""
        names = self.rng.choices(self.names, weights=self.weights, k=num_examples)
        return [(name, self.datasets[name][self._next_index(name)]) for name in names]

    def state_dict(self) -> dict[str, Any]:
        version, internal, gauss = self.rng.getstate()
        return {
            "rng": [version, list(internal), gauss],
            "order": {name: list(order) for name, order in self.order.items()},
            "position": dict(self.position),
            "epoch": dict(self.epoch),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        missing = set(self.names) - set(state["order"])
        if missing:
            raise ValueError(f"checkpointed buffer has no state for environment(s) {sorted(missing)}")
        version, internal, gauss = state["rng"]
        self.rng.setstate((version, tuple(internal), gauss))
        for name in self.names:
            if state["order"][name] and max(state["order"][name]) >= len(self.datasets[name]):
                raise ValueError(
                    f"checkpointed buffer order for `{name}` does not fit its dataset of {len(self.datasets[name])}"
                )
            self.order[name] = list(state["order"][name])
            self.position[name] = int(state["position"][name])
            self.epoch[name] = int(state["epoch"][name])

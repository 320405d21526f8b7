"""Which examples each step trains on: weighted choice of environment, then a seeded pass over its dataset.

Within one environment, examples are drawn without replacement from a shuffled order; a new shuffle starts when
the dataset is exhausted (an epoch). With difficulty pools (`difficulty.py`), the pass skips examples in the easy
and hard pools and a share of each step comes from those pools. The whole state (RNG, positions, pools) is saved in
orchestrator checkpoints.
"""

from __future__ import annotations

import random
from typing import Any

from prime_rl.environments.types import Example
from prime_rl.orchestrator.difficulty import DifficultyPools


class ExampleBuffer:
    """Samples `(env_name, example)` pairs; environments are chosen with probability proportional to their weight."""

    def __init__(
        self,
        datasets: dict[str, list[Example]],
        weights: dict[str, float],
        seed: int = 0,
        pools: DifficultyPools | None = None,
    ):
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
        self.pools = pools
        self.index = {name: {ex.example_id: i for i, ex in enumerate(examples)} for name, examples in datasets.items()}

    def _advance(self, name: str) -> int:
        if self.position[name] >= len(self.order[name]):
            order = list(range(len(self.datasets[name])))
            self.rng.shuffle(order)
            self.order[name], self.position[name] = order, 0
            self.epoch[name] += 1
        index = self.order[name][self.position[name]]
        self.position[name] += 1
        return index

    def _next_index(self, name: str, skip: set[int]) -> int:
        """The next index of the pass over `name` whose example_id is not in `skip` (unless all of them are)."""
        if len(skip & self.index[name].keys()) == len(self.datasets[name]):
            skip = set()
        while self.datasets[name][index := self._advance(name)].example_id in skip:
            pass
        return index

    def _pool_members(self, pool: str) -> list[tuple[str, int]]:
        return [key for key in self.pools.members(pool) if key[1] in self.index.get(key[0], {})]

    def sample(self, num_examples: int) -> list[tuple[str, Example]]:
        """`num_examples` examples for one step, in the order their groups will appear in the batch: the normal
        examples, then (with pools) the hard and the easy draws."""
        members = {"easy": [], "hard": []}
        counts = {"easy": 0, "hard": 0}
        if self.pools is not None:
            members = {pool: self._pool_members(pool) for pool in ("easy", "hard")}
            counts = self.pools.draw_counts(num_examples, {pool: len(keys) for pool, keys in members.items()})
        skip: dict[str, set[int]] = {name: set() for name in self.names}
        for env, example_id in members["easy"] + members["hard"]:
            skip[env].add(example_id)
        names = self.rng.choices(self.names, weights=self.weights, k=num_examples - sum(counts.values()))
        out = [(name, self.datasets[name][self._next_index(name, skip[name])]) for name in names]
        for pool in ("hard", "easy"):
            for env, example_id in self.rng.sample(members[pool], counts[pool]):
                out.append((env, self.datasets[env][self.index[env][example_id]]))
        return out

    def state_dict(self) -> dict[str, Any]:
        version, internal, gauss = self.rng.getstate()
        return {
            "rng": [version, list(internal), gauss],
            "order": {name: list(order) for name, order in self.order.items()},
            "position": dict(self.position),
            "epoch": dict(self.epoch),
            **({"pools": self.pools.state_dict()} if self.pools is not None else {}),
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
        if self.pools is not None and "pools" in state:
            self.pools.load_state_dict(state["pools"])

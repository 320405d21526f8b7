"""Refilling zero-advantage groups: which groups are dropped, how many rounds and extra groups, the give-up bound,
and the group numbering of the request seeds."""

import asyncio

from prime_rl.environments.types import Example, Rollout
from prime_rl.orchestrator.batch import Group
from prime_rl.orchestrator.generate import Generation
from prime_rl.orchestrator.refill import has_signal, refill


def _group(example_id: int, rewards: list[float]) -> Group:
    rollouts = [Rollout(example_id, "env", [], [], [], reward=r) for r in rewards]
    return Group("env", Example(example_id, []), rollouts)


class Source:
    """Examples numbered 100, 101, ...; the rewards of example i are `rewards[i]` (default: all equal)."""

    def __init__(self, rewards: dict[int, list[float]]):
        self.rewards, self.next_id, self.calls = rewards, 100, []

    def sample(self, count: int) -> list[tuple[str, Example]]:
        ids = range(self.next_id, self.next_id + count)
        self.next_id += count
        return [("env", Example(i, [])) for i in ids]

    async def generate(self, examples: list[tuple[str, Example]], first_group: int) -> Generation:
        self.calls.append(([ex.example_id for _, ex in examples], first_group))
        groups = [_group(ex.example_id, self.rewards.get(ex.example_id, [0.0, 0.0])) for _, ex in examples]
        return Generation(groups, wall_s=1.0, score_s=0.5, tokens=2 * len(groups))


def _first(*rewards: list[float]) -> Generation:
    groups = [_group(i, r) for i, r in enumerate(rewards)]
    return Generation(groups, wall_s=1.0, score_s=0.5, tokens=2 * len(groups))


def test_zero_advantage_groups_are_replaced_in_rounds_until_the_batch_has_signal():
    source = Source({100: [1.0, 0.0], 101: [0.0, 0.0], 102: [0.5, 1.0]})
    first = _first([1.0, 1.0], [0.0, 1.0], [0.0, 0.0])
    generation, result = asyncio.run(refill(first, source.sample, source.generate, max_extra=8))
    # Round 1 replaces groups 0 and 2 with examples 100, 101 (seeds from group number 3); 101 has no signal,
    # round 2 asks for one more group (102, group number 5).
    assert source.calls == [([100, 101], 3), ([102], 5)]
    assert [g.example.example_id for g in result.groups] == [1, 100, 102]
    assert (result.zero_advantage, result.extra, result.gave_up) == (3, 3, False)
    assert [g.example.example_id for g in generation.groups] == [0, 1, 2, 100, 101, 102]
    assert (generation.wall_s, generation.score_s, generation.tokens) == (3.0, 1.5, 12)


def test_refill_gives_up_after_max_extra_and_completes_with_zero_advantage_groups():
    source = Source({101: [0.0, 1.0]})
    first = _first([1.0, 1.0], [0.0, 1.0], [0.0, 0.0], [0.5, 0.5])
    generation, result = asyncio.run(refill(first, source.sample, source.generate, max_extra=4))
    assert source.calls == [([100, 101, 102], 4), ([103], 7)]
    assert (result.extra, result.gave_up, result.zero_advantage) == (4, True, 6)
    # signal first (1, then 101), then the earliest zero-advantage groups fill the batch back to 4 groups
    assert [g.example.example_id for g in result.groups] == [1, 101, 0, 2]
    assert len(generation.groups) == 8


def test_no_refill_needed_or_allowed():
    source = Source({})
    first = _first([1.0, 0.0], [0.0, 0.25])
    _, result = asyncio.run(refill(first, source.sample, source.generate, max_extra=4))
    assert source.calls == [] and [g.example.example_id for g in result.groups] == [0, 1]
    assert (result.zero_advantage, result.extra, result.gave_up) == (0, 0, False)
    _, bounded = asyncio.run(refill(_first([1.0, 1.0], [0.0, 0.0]), source.sample, source.generate, max_extra=0))
    assert source.calls == [] and (bounded.extra, bounded.gave_up) == (0, True)
    assert [g.example.example_id for g in bounded.groups] == [0, 1]


def test_has_signal_sees_rewards_as_the_advantage_baseline_does():
    assert not has_signal(_group(0, [0.5, 0.5, 0.5]))
    assert has_signal(_group(0, [0.5, 0.5, 0.6]))
    errored = _group(0, [1.0, 0.0])
    errored.rollouts[1].error = "rollout failed: boom"  # takes the mean of the successful ones: no signal left
    assert not has_signal(errored)

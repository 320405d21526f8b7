"""Online difficulty filtering: pools by recent mean reward, exact draw counts over steps, sampling that skips the
pooled examples, and a state_dict round trip that continues identically."""

import json

import pytest

from prime_rl.environments.types import Example, Rollout
from prime_rl.orchestrator.batch import Group
from prime_rl.orchestrator.buffer import ExampleBuffer
from prime_rl.orchestrator.config import DifficultyConfig
from prime_rl.orchestrator.difficulty import DifficultyPools


def _examples(n: int) -> list[Example]:
    return [Example(example_id=i, prompt=[]) for i in range(n)]


def _group(env: str, example_id: int, rewards: list[float]) -> Group:
    return Group(env, Example(example_id, []), [Rollout(example_id, env, [], [], [], reward=r) for r in rewards])


def test_pools_follow_thresholds_over_the_recent_window():
    pools = DifficultyPools(DifficultyConfig(easy_threshold=0.9, hard_threshold=0.1, window=2))
    pools.update([_group("a", 0, [1.0, 1.0]), _group("a", 1, [0.0, 0.0]), _group("a", 2, [0.0, 1.0])])
    assert [pools.pool(("a", i)) for i in (0, 1, 2, 3)] == ["easy", "hard", "normal", "normal"]
    pools.update([_group("a", 0, [0.5, 1.0])])  # recent rewards of example 0: 1.0, 0.75 -> mean 0.875
    assert pools.pool(("a", 0)) == "normal"
    pools.update([_group("a", 0, [1.0, 1.0]), _group("a", 0, [1.0, 1.0])])  # only the last 2 count
    assert pools.recent[("a", 0)] == [1.0, 1.0] and pools.pool(("a", 0)) == "easy"
    errored = _group("a", 3, [1.0, 0.0])
    errored.rollouts[1].error = "boom"  # counts as the mean of the successful rollouts, as in the baseline
    pools.update([errored])
    assert pools.pool(("a", 3)) == "easy"
    assert pools.sizes() == {"easy": 2, "hard": 1, "normal": 1}
    assert pools.members("easy") == [("a", 0), ("a", 3)]


def test_draw_counts_meet_the_fractions_exactly_over_steps():
    pools = DifficultyPools(DifficultyConfig(easy_fraction=0.1, hard_fraction=0.25))
    plenty = {"easy": 10, "hard": 10}
    counts = [pools.draw_counts(4, plenty) for _ in range(10)]
    assert [c["easy"] for c in counts] == [0, 0, 1, 0, 1, 0, 0, 1, 0, 1]  # 0.4 per step: 4 of 40 draws
    assert [c["hard"] for c in counts] == [1] * 10
    # A pool that cannot serve its draws forfeits them (the normal examples take them; nothing is owed later).
    assert pools.draw_counts(8, {"easy": 0, "hard": 1}) == {"easy": 0, "hard": 1}
    assert pools.credit == {"easy": pytest.approx(0.8), "hard": 0.0}
    with pytest.raises(ValueError, match=r"easy_fraction \+ hard_fraction \(1.5\) exceeds 1"):
        DifficultyConfig(easy_fraction=0.75, hard_fraction=0.75)
    with pytest.raises(ValueError, match=r"hard_threshold \(0.5\) must be below easy_threshold \(0.5\)"):
        DifficultyConfig(easy_threshold=0.5, hard_threshold=0.5)


def test_buffer_skips_pooled_examples_and_draws_the_fractions_from_the_pools():
    pools = DifficultyPools(DifficultyConfig(easy_fraction=0.25, hard_fraction=0.25))
    buffer = ExampleBuffer({"a": _examples(8)}, {"a": 1.0}, seed=0, pools=pools)
    pools.update([_group("a", 0, [1.0]), _group("a", 1, [1.0]), _group("a", 2, [0.0])])
    for _ in range(5):
        drawn = [ex.example_id for _, ex in buffer.sample(4)]
        assert not {0, 1, 2} & set(drawn[:2])  # the normal pass skips the pooled examples
        assert drawn[2] == 2 and drawn[3] in (0, 1)  # then one hard, then one easy draw
    # every example pooled: the pass takes them anyway rather than starving
    pools.update([_group("a", i, [1.0]) for i in range(8)])
    drawn = [ex.example_id for _, ex in buffer.sample(4)]
    assert len(drawn) == 4 and pools.sizes()["easy"] == 8


def test_without_pools_the_sequence_is_unchanged():
    plain = ExampleBuffer({"a": _examples(5), "b": _examples(3)}, {"a": 1.0, "b": 2.0}, seed=7)
    pooled = ExampleBuffer(
        {"a": _examples(5), "b": _examples(3)}, {"a": 1.0, "b": 2.0}, seed=7, pools=DifficultyPools(DifficultyConfig())
    )
    for _ in range(4):
        assert [(n, e.example_id) for n, e in plain.sample(3)] == [(n, e.example_id) for n, e in pooled.sample(3)]


def test_state_dict_round_trip_through_json_continues_identically():
    config = DifficultyConfig(easy_fraction=0.3, hard_fraction=0.2, window=3)

    def make(seed: int) -> ExampleBuffer:
        return ExampleBuffer(
            {"a": _examples(9), "b": _examples(4)}, {"a": 1.0, "b": 1.0}, seed, DifficultyPools(config)
        )

    buffer = make(1)
    for step in range(3):
        drawn = buffer.sample(5)
        buffer.pools.update([_group(env, ex.example_id, [float(ex.example_id % 3 == step % 3)]) for env, ex in drawn])
    state = json.loads(json.dumps(buffer.state_dict()))  # as in the orchestrator checkpoint
    expected = [(n, e.example_id) for n, e in buffer.sample(10)]
    restored = make(99)
    restored.load_state_dict(state)
    assert restored.pools.recent == make_history(state) and restored.pools.credit == state["pools"]["credit"]
    assert [(n, e.example_id) for n, e in restored.sample(10)] == expected


def make_history(state: dict) -> dict:
    return {(env, i): r for env, i, r in state["pools"]["recent"]}

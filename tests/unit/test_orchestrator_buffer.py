from collections import Counter

import pytest

from prime_rl.environments.types import Example
from prime_rl.orchestrator.buffer import ExampleBuffer


def _examples(n: int) -> list[Example]:
    return [Example(example_id=i, prompt=[{"role": "user", "content": str(i)}]) for i in range(n)]


def test_one_epoch_visits_every_example_once():
    buffer = ExampleBuffer({"a": _examples(5)}, {"a": 1.0}, seed=3)
    ids = [ex.example_id for _, ex in buffer.sample(5)]
    assert sorted(ids) == [0, 1, 2, 3, 4]
    second = [ex.example_id for _, ex in buffer.sample(5)]
    assert sorted(second) == [0, 1, 2, 3, 4]
    assert buffer.epoch["a"] == 2


def test_same_seed_same_sequence_and_weights_respected():
    datasets = {"a": _examples(10), "b": _examples(10)}
    one = ExampleBuffer(datasets, {"a": 4.0, "b": 1.0}, seed=0).sample(200)
    two = ExampleBuffer(datasets, {"a": 4.0, "b": 1.0}, seed=0).sample(200)
    assert [(n, e.example_id) for n, e in one] == [(n, e.example_id) for n, e in two]
    counts = Counter(name for name, _ in one)
    assert 140 <= counts["a"] <= 180  # expected 160 of 200


def test_state_dict_round_trip_continues_identically():
    buffer = ExampleBuffer({"a": _examples(7), "b": _examples(3)}, {"a": 1.0, "b": 1.0}, seed=1)
    buffer.sample(4)
    state = buffer.state_dict()
    expected = [(n, e.example_id) for n, e in buffer.sample(9)]
    restored = ExampleBuffer({"a": _examples(7), "b": _examples(3)}, {"a": 1.0, "b": 1.0}, seed=99)
    restored.load_state_dict(state)
    assert [(n, e.example_id) for n, e in restored.sample(9)] == expected


def test_empty_dataset_and_mismatched_weights_are_errors():
    with pytest.raises(ValueError, match=r"environment\(s\) \['b'\] have an empty dataset"):
        ExampleBuffer({"a": _examples(1), "b": []}, {"a": 1.0, "b": 1.0})
    with pytest.raises(ValueError, match="do not match environments"):
        ExampleBuffer({"a": _examples(1)}, {"x": 1.0})

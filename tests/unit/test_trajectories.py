"""rollout_to_samples: interleaving on exact prefixes, splitting otherwise, masking errored rollouts."""

from __future__ import annotations

import pytest

from prime_rl.environments import Rollout, Turn
from prime_rl.orchestrator.trajectories import SampleParts, rollout_to_samples


def turn(prompt, completion, logprobs, temperature=1.0, policy_step=0, mask=None):
    mask = [True] * len(completion) if mask is None else mask
    return Turn(prompt, completion, logprobs, mask, temperature, policy_step, "stop")


def make_rollout(turns, error=None):
    return Rollout(3, "toy", [], [], turns, error=error)


def test_single_turn_is_one_sample():
    (sample,) = rollout_to_samples(make_rollout([turn([1, 2], [3, 4], [-0.5, -0.25], 0.7, 5)]))
    assert sample == SampleParts([1, 2], [3, 4], [True, True], [-0.5, -0.25], [0.7, 0.7], 5)


def test_interleaved_multi_turn():
    t1 = turn([1, 2], [3, 4], [-0.1, -0.2], 1.0, policy_step=4)
    t2 = turn([1, 2, 3, 4, 8, 9], [5], [-0.3], 0.5, policy_step=3)
    t3 = turn([1, 2, 3, 4, 8, 9, 5, 7], [6, 2], [-0.4, -0.5], 0.5, policy_step=5)
    (sample,) = rollout_to_samples(make_rollout([t1, t2, t3]))
    assert sample.prompt_ids == [1, 2]
    assert sample.completion_ids == [3, 4, 8, 9, 5, 7, 6, 2]
    assert sample.completion_mask == [True, True, False, False, True, False, True, True]
    assert sample.completion_logprobs == [-0.1, -0.2, 0.0, 0.0, -0.3, 0.0, -0.4, -0.5]
    assert sample.completion_temperatures == [1.0, 1.0, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5]
    assert sample.policy_step == 3


def test_turn_mask_from_environment_is_kept():
    t1 = turn([1], [3, 4], [-0.1, -0.2], mask=[True, False])
    (sample,) = rollout_to_samples(make_rollout([t1]))
    assert sample.completion_mask == [True, False]


def test_prefix_mismatch_splits_into_samples():
    t1 = turn([1, 2], [3, 4], [-0.1, -0.2], policy_step=1)
    t2 = turn([1, 2, 3, 9, 8], [5], [-0.3], policy_step=2)  # history re-rendered: 9 != 4
    samples = rollout_to_samples(make_rollout([t1, t2]))
    assert [s.prompt_ids for s in samples] == [[1, 2], [1, 2, 3, 9, 8]]
    assert [s.completion_ids for s in samples] == [[3, 4], [5]]
    assert [s.completion_mask for s in samples] == [[True, True], [True]]
    assert [s.policy_step for s in samples] == [1, 2]


def test_shorter_prompt_splits_and_later_turns_join_the_new_sample():
    t1 = turn([1, 2], [3, 4], [-0.1, -0.2])
    t2 = turn([1, 2], [5], [-0.3])  # prompt shorter than previous prompt + completion
    t3 = turn([1, 2, 5, 6], [7], [-0.4])  # extends t2
    samples = rollout_to_samples(make_rollout([t1, t2, t3]))
    assert [(s.prompt_ids, s.completion_ids, s.completion_mask) for s in samples] == [
        ([1, 2], [3, 4], [True, True]),
        ([1, 2], [5, 6, 7], [True, False, True]),
    ]


def test_errored_rollout_masks_everything():
    t1 = turn([1, 2], [3, 4], [-0.1, -0.2])
    t2 = turn([1, 2, 3, 4, 8], [5], [-0.3])
    (sample,) = rollout_to_samples(make_rollout([t1, t2], error="reward function `f` failed"))
    assert sample.completion_ids == [3, 4, 8, 5]
    assert sample.completion_mask == [False, False, False, False]
    assert rollout_to_samples(make_rollout([], error="rollout failed")) == []


def test_inconsistent_turn_lengths_name_the_example():
    with pytest.raises(ValueError, match=r"example 3 \(toy\) turn 0: 2 completion ids, 1 logprobs"):
        rollout_to_samples(make_rollout([turn([1], [3, 4], [-0.1], mask=[True, True])]))

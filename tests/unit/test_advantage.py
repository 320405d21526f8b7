"""The default advantage, `compute_advantages`, and the call-time checks on custom advantage functions."""

from __future__ import annotations

import sys

import pytest
import torch

from prime_rl.orchestrator.advantage import (
    AdvantageInputs,
    default_advantage_fn,
    setup_advantage_fn,
)
from prime_rl.orchestrator.batch_advantages import compute_advantages
from prime_rl.orchestrator.config import AdvantageConfig, CustomAdvantageConfig
from prime_rl.utils.config import ConfigError


def inputs(rewards, lengths) -> AdvantageInputs:
    return AdvantageInputs(rewards=torch.tensor(rewards, dtype=torch.float64), completion_lengths=torch.tensor(lengths))


def test_default_subtracts_the_group_mean():
    adv = default_advantage_fn(inputs([[1.0, 0.5, 0.8], [0.2, 0.9, 0.1]], [[1, 1, 1], [1, 1, 1]])).advantages
    assert adv.tolist()[0] == pytest.approx([1 - 2.3 / 3, 0.5 - 2.3 / 3, 0.8 - 2.3 / 3])
    assert adv.tolist()[1] == pytest.approx([0.2 - 0.4, 0.9 - 0.4, 0.1 - 0.4])


def test_length_weighted_baseline():
    # baseline (1*10 + 0.5*20 + 0.8*10) / 40 = 0.7
    adv = default_advantage_fn(inputs([[1.0, 0.5, 0.8]], [[10, 20, 10]]), length_weighted_mean=True).advantages
    assert adv.tolist()[0] == pytest.approx([0.3, -0.2, 0.1])


def test_compute_advantages_flat_groups():
    rewards = [1.0, 0.5, 0.8, 0.2, 0.9, 0.1]
    adv = compute_advantages(rewards, [10, 20, 10, 5, 5, 5], 3, AdvantageConfig())
    assert sum(adv[:3]) == pytest.approx(0.0) and sum(adv[3:]) == pytest.approx(0.0)
    adv = compute_advantages(rewards[:3], [10, 20, 10], 3, AdvantageConfig(length_weighted_mean=True))
    assert adv == pytest.approx([0.3, -0.2, 0.1])


def test_compute_advantages_rejects_partial_groups():
    with pytest.raises(ValueError, match=r"5 rewards do not split into groups of samples_per_problem=3"):
        compute_advantages([0.0] * 5, [1] * 5, 3, AdvantageConfig())
    with pytest.raises(ValueError, match=r"3 rewards but 2 completion lengths"):
        compute_advantages([0.0] * 3, [1] * 2, 3, AdvantageConfig())


USER_MODULE = """
import torch
from prime_rl.orchestrator.advantage import AdvantageOutputs

def scaled(inputs, scale=1.0):
    return AdvantageOutputs(advantages=inputs.rewards * scale)

def wrong_type(inputs):
    return inputs.rewards

def wrong_shape(inputs):
    return AdvantageOutputs(advantages=inputs.rewards.reshape(-1))

def nan(inputs):
    return AdvantageOutputs(advantages=inputs.rewards / 0 * 0)
"""


@pytest.fixture
def adv_module(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "user_advantages_mod.py").write_text(USER_MODULE)
    yield "user_advantages_mod"
    sys.modules.pop("user_advantages_mod", None)


def test_custom_advantage_with_kwargs(adv_module):
    config = CustomAdvantageConfig(import_path=f"{adv_module}.scaled", kwargs={"scale": 2})
    assert compute_advantages([1.0, 0.5, 0.8], [1, 1, 1], 3, config) == pytest.approx([2.0, 1.0, 1.6])
    config = CustomAdvantageConfig(import_path=f"{adv_module}:scaled")
    assert compute_advantages([1.0, 0.5], [1, 1], 2, config) == [1.0, 0.5]


@pytest.mark.parametrize(
    ("fn", "message"),
    [
        (
            "wrong_type",
            "advantage function `user_advantages_mod.wrong_type` returned Tensor, expected AdvantageOutputs",
        ),
        (
            "wrong_shape",
            r"advantage function `user_advantages_mod.wrong_shape` returned advantages of shape \(4,\), "
            r"expected \(2, 2\)",
        ),
        ("nan", r"advantage function `user_advantages_mod.nan` returned a non-finite advantage nan at \[0, 0\]"),
    ],
)
def test_custom_advantage_call_time_errors_name_the_function(adv_module, fn, message):
    config = CustomAdvantageConfig(import_path=f"{adv_module}.{fn}")
    with pytest.raises((TypeError, ValueError), match=message):
        compute_advantages([1.0, 0.5, 0.8, 0.0], [1] * 4, 2, config)


def test_setup_advantage_fn_rejects_bad_paths_and_kwargs(adv_module):
    with pytest.raises(ConfigError, match=r"has no attribute `scaledd` \(close names: scaled\)"):
        setup_advantage_fn(CustomAdvantageConfig(import_path=f"{adv_module}.scaledd"))
    with pytest.raises(ConfigError, match=r"import_path `user_advantages_mod.scaled`: kwargs \{'eps': 1\} do not fit"):
        setup_advantage_fn(CustomAdvantageConfig(import_path=f"{adv_module}.scaled", kwargs={"eps": 1}))
    with pytest.raises(ConfigError, match=r"module `nowhere_mod` not found"):
        setup_advantage_fn(CustomAdvantageConfig(import_path="nowhere_mod.fn"))

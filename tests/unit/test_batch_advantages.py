"""`compute_advantages` runs the built-in advantages on plain floats (no torch in the orchestrator) and agrees with
their tensor forms; anything else goes through the tensor contract, errors included."""

from __future__ import annotations

import random
import subprocess
import sys

import pytest

from prime_rl.orchestrator.advantage import tensor_advantages
from prime_rl.orchestrator.batch_advantages import compute_advantages, plain_advantages
from prime_rl.orchestrator.config import (
    AdvantageConfig,
    CustomAdvantageConfig,
    GRPOAdvantageConfig,
    RLOOAdvantageConfig,
)

BUILT_INS = [
    AdvantageConfig(),
    AdvantageConfig(length_weighted_mean=True),
    GRPOAdvantageConfig(),
    GRPOAdvantageConfig(eps=0.0),
    RLOOAdvantageConfig(),
]


@pytest.mark.parametrize("config", BUILT_INS, ids=lambda c: f"{c.type}-{c.model_dump()}")
@pytest.mark.parametrize("group_size", [2, 3, 8])
def test_built_ins_on_plain_floats_equal_their_tensor_forms(config, group_size):
    rng = random.Random(group_size)
    rewards = [rng.choice([0.0, 0.5, 1.0, 2.5]) + rng.random() for _ in range(4 * group_size)]
    lengths = [rng.randint(0, 30) for _ in rewards]
    plain = plain_advantages(rewards, lengths, group_size, config)
    assert plain is not None
    assert plain == pytest.approx(tensor_advantages(rewards, lengths, group_size, config), rel=1e-12, abs=1e-12)


def test_make_run_rewards_give_the_same_floats_on_both_paths():
    rewards = [0.0, 0.5, 2.5, 0.5, 0.0, 0.0, 2.5, 0.5] * 2
    for config in BUILT_INS[:3] + BUILT_INS[4:]:
        assert compute_advantages(rewards, [12] * 16, 8, config) == tensor_advantages(rewards, [12] * 16, 8, config)


def test_what_has_no_plain_form_goes_through_the_tensor_contract():
    assert plain_advantages([1.0, 0.0], [1, 1], 1, GRPOAdvantageConfig()) is None  # too small a group
    assert plain_advantages([1.0, 1.0], [1, 1], 2, GRPOAdvantageConfig(eps=0.0)) is None  # 0 / 0
    assert plain_advantages([1.0, 0.0], [1, 1], 2, CustomAdvantageConfig(import_path="m.f")) is None
    with pytest.raises(ValueError, match="grpo_advantage` returned a non-finite advantage nan at \\[0, 0\\]"):
        compute_advantages([1.0, 1.0], [1, 1], 2, GRPOAdvantageConfig(eps=0.0))
    with pytest.raises(ValueError, match="needs at least 2 rollouts per example, got 1"):
        compute_advantages([1.0, 0.0], [1, 1], 1, RLOOAdvantageConfig())


def test_the_orchestrator_imports_no_torch():
    code = (
        "import sys, prime_rl.orchestrator.orchestrator as o, prime_rl.orchestrator.batch_advantages as b\n"
        "from prime_rl.orchestrator.config import GRPOAdvantageConfig\n"
        "print(b.compute_advantages([1.0, 0.0, 0.5, 0.5], [3] * 4, 2, GRPOAdvantageConfig()), 'torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == f"{[0.5 / (0.5**0.5 + 1e-6), -0.5 / (0.5**0.5 + 1e-6), 0.0, 0.0]} False"

import importlib.util
from pathlib import Path

import pytest

PROBE = Path(__file__).parents[2] / "examples" / "reverse_text" / "probe.py"


@pytest.fixture(scope="module")
def probe():
    spec = importlib.util.spec_from_file_location("reverse_probe", PROBE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_group_stats_spread_and_advantages(probe):
    stats = probe.group_stats([[0.2, 0.4], [0.5, 0.5]], [[True, True], [True, False]])
    assert stats["reward"] == pytest.approx(0.4)
    assert stats["group_std"] == pytest.approx(0.05)  # (0.1 + 0) / 2
    assert stats["zero_adv_groups"] == 0.5
    assert stats["exact"] == 0.0
    assert stats["adv_abs_default"] == pytest.approx(0.05)  # 0.1, 0.1, 0, 0
    # GRPO divides by the sample std: 0.1 / 0.1414 for the first group, 0 for the equal one
    assert stats["adv_abs_grpo"] == pytest.approx(0.5 * 0.1 / (0.02**0.5 + 1e-6))
    assert stats["tagged"] == 0.75


def test_format_stats(probe):
    assert probe.format_stats("T=1.0", {"reward": 0.25, "exact": 0.0}) == "T=1.0: reward 0.250 | exact 0.000"


def test_chance_floors_are_seeded_and_exact(probe):
    floors = probe.chance_floors(num_examples=10, k=2)
    assert list(floors) == ["unreversed", "shuffled letters", "random letters", "another phrase reversed"]
    assert floors["unreversed"]["reward"] == pytest.approx(0.3578, abs=1e-4)
    assert floors["unreversed"]["zero_adv_groups"] == 1.0  # the same guess k times
    assert floors["random letters"]["reward"] == pytest.approx(0.2942, abs=1e-4)
    assert floors["another phrase reversed"]["reward"] == pytest.approx(0.3647, abs=1e-4)
    assert probe.chance_floors(num_examples=10, k=2) == floors


def test_reversal_score_floors_and_near_reversals(probe):
    from prime_rl.environments.reverse_text import reversal_score

    floors = probe.chance_floors(num_examples=10, k=2, score=reversal_score)
    assert floors["unreversed"]["reward"] == pytest.approx(0.0053, abs=1e-4)
    assert floors["shuffled letters"]["reward"] == pytest.approx(0.0237, abs=1e-4)
    assert floors["random letters"]["reward"] == 0.0
    assert floors["another phrase reversed"]["reward"] == 0.0
    near = probe.near_reversals(num_examples=10, k=2, score=reversal_score)
    assert list(near) == ["one wrong letter", "first word only", "exact"]
    assert near["exact"]["reward"] == 1.0
    assert near["one wrong letter"]["reward"] == pytest.approx(0.8949, abs=1e-4)
    assert near["first word only"]["reward"] == pytest.approx(0.0851, abs=1e-4)
    assert probe.near_reversals(num_examples=10, k=2, score=reversal_score) == near

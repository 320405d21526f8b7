"""The verifiers adapter's parts that need no verifiers install: branch token streams as turns, and the one-line
errors of an environment that needs verifiers (the shared test venv has none)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from prime_rl.environments import load_environment
from prime_rl.environments.types import Rollout
from prime_rl.environments.verifiers import verifiers_version
from prime_rl.environments.verifiers.trace import branch_turn
from prime_rl.orchestrator.trajectories import rollout_to_samples
from prime_rl.utils.config import ConfigError

NEEDS_VERIFIERS = """
import verifiers.v1 as vf

__all__ = ["Nothing"]
"""


def test_branch_turn_starts_the_completion_at_the_first_sampled_token():
    ids = [1, 2, 3, 10, 11, 4, 5, 12]
    mask = [False, False, False, True, True, False, False, True]
    logprobs = [0.0, 0.0, 0.0, -0.5, -0.25, 0.0, 0.0, -1.5]
    turn = branch_turn(ids, mask, logprobs, temperature=0.7, policy_step=3, finish_reason="stop")
    assert turn.prompt_ids == [1, 2, 3]
    assert turn.completion_ids == [10, 11, 4, 5, 12]
    assert turn.completion_mask == [True, True, False, False, True]
    assert turn.completion_logprobs == [-0.5, -0.25, 0.0, 0.0, -1.5]
    assert (turn.temperature, turn.policy_step, turn.finish_reason) == (0.7, 3, "stop")
    rollout = Rollout(0, "vf", [], [], [turn])
    (sample,) = rollout_to_samples(rollout)
    assert sample.completion_mask == [True, True, False, False, True]
    assert sample.completion_temperatures == [0.7] * 5


def test_branch_without_sampled_tokens_is_no_turn():
    assert branch_turn([1, 2], [False, False], [0.0, 0.0], 1.0, 0, "stop") is None


@pytest.mark.skipif(verifiers_version() is not None, reason="verifiers is installed here")
def test_environment_needing_verifiers_without_it_is_one_line(write_module):
    write_module("needs_vf", NEEDS_VERIFIERS)
    with pytest.raises(ConfigError) as e:
        load_environment("needs-vf")
    assert str(e.value) == (
        "environment `needs-vf`: module `needs_vf` needs verifiers, which is not installed: "
        "pip install -e '.[verifiers]' (verifiers>=0.4,<0.5)"
    )


@pytest.mark.skipif(verifiers_version() is not None, reason="verifiers is installed here")
def test_rl_with_a_verifiers_env_and_no_verifiers_exits_2_with_one_line(tmp_path, tiny_model_dir):
    (tmp_path / "needs_vf.py").write_text(NEEDS_VERIFIERS)
    config = tmp_path / "rl.toml"
    config.write_text(
        f'output_dir = "{tmp_path / "out"}"\nmax_steps = 1\n[model]\nname = "{tiny_model_dir}"\n'
        '[[orchestrator.env]]\nid = "needs_vf"\n'
    )
    env = {"PYTHONPATH": f"{tmp_path}:{':'.join(sys.path)}"}
    result = subprocess.run(
        [sys.executable, "-m", "prime_rl.rl", "@", str(config)], capture_output=True, text=True, env=env, timeout=120
    )
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0] == (
        f"rl: error: {config}: `orchestrator.env[0]`: environment `needs_vf`: module `needs_vf` needs verifiers, "
        "which is not installed: pip install -e '.[verifiers]' (verifiers>=0.4,<0.5)"
    )


def test_unknown_environment_id_names_the_key(tmp_path, tiny_model_dir):
    config = tmp_path / "rl.toml"
    config.write_text(
        f'output_dir = "{tmp_path / "out"}"\nmax_steps = 1\n[model]\nname = "{tiny_model_dir}"\n'
        '[[orchestrator.env]]\nid = "no-such-taskset"\n'
    )
    result = subprocess.run(
        [sys.executable, "-m", "prime_rl.rl", "@", str(config)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 2, result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(
        f"rl: error: {config}: `orchestrator.env[0]`: environment `no-such-taskset` is not a built-in"
    ), line
    assert "a verifiers taskset is an installed package too" in line

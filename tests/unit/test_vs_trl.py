"""benchmarks/vs_trl.py: the settings both sides share map onto TRL's GRPOConfig, and TRL gets the rubric's rewards."""

import asyncio
import importlib.util
import os
import tomllib
from pathlib import Path

import pytest

from prime_rl.environments import load_environment
from prime_rl.environments.types import Example, Rollout
from prime_rl.launcher.config import RLConfig
from prime_rl.utils.config import parse_config

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "one_word" / "rl.toml"


@pytest.fixture(scope="module")
def vs_trl():
    spec = importlib.util.spec_from_file_location("vs_trl", REPO / "benchmarks" / "vs_trl.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def config():
    return parse_config(RLConfig, ["@", str(EXAMPLE)])


@pytest.fixture(scope="module")
def shared(vs_trl, config):
    return vs_trl.shared_settings(config)


def test_shared_settings_come_from_the_example(shared, config):
    toml = tomllib.loads(EXAMPLE.read_text())
    orch = toml["orchestrator"]
    assert shared["model"] == toml["model"]["name"]
    assert (shared["env_id"], shared["env_args"]) == (orch["env"][0]["id"], orch["env"][0]["args"])
    assert shared["rollouts_per_example"] == orch["rollouts_per_example"]
    assert shared["batch_size"] == orch["batch_size"]
    assert shared["max_tokens"] == orch["sampling"]["max_tokens"]
    assert shared["temperature"] == orch["sampling"]["temperature"]
    assert shared["lr"] == toml["trainer"]["optim"]["lr"]
    assert shared["steps"] == toml["max_steps"]
    assert shared["threads"] == config.inference.num_threads + config.trainer.num_threads == (os.cpu_count() or 2)
    assert shared["advantage"] == orch.get("advantage", {}).get("type", "default")


def test_an_advantage_without_a_trl_counterpart_is_refused(vs_trl):
    config = parse_config(RLConfig, ["@", str(EXAMPLE), "--orchestrator.advantage.type", "rloo"])
    with pytest.raises(ValueError, match=r"orchestrator.advantage: .* has no TRL counterpart"):
        vs_trl.shared_settings(config)


def test_grpo_config_kwargs_map_the_shared_settings(vs_trl, shared):
    kwargs = vs_trl.grpo_config_kwargs(shared, "/tmp/x")
    assert kwargs["per_device_train_batch_size"] == shared["batch_size"]
    assert (kwargs["gradient_accumulation_steps"], kwargs["steps_per_generation"]) == (1, 1)
    assert kwargs["num_generations"] == shared["rollouts_per_example"]
    assert kwargs["max_completion_length"] == shared["max_tokens"]
    assert (kwargs["temperature"], kwargs["top_p"]) == (shared["temperature"], shared["top_p"])
    assert (kwargs["learning_rate"], kwargs["lr_scheduler_type"]) == (shared["lr"], "constant")
    assert (kwargs["adam_beta1"], kwargs["adam_beta2"]) == shared["betas"]
    assert (kwargs["weight_decay"], kwargs["max_grad_norm"]) == (shared["weight_decay"], shared["max_norm"])
    assert (kwargs["max_steps"], kwargs["beta"]) == (shared["steps"], 0.0)
    assert kwargs["scale_rewards"] == {"default": "none", "grpo": "group"}[shared["advantage"]]
    assert kwargs["gradient_checkpointing"] is shared["activation_checkpointing"] is False
    assert (kwargs["use_cpu"], kwargs["bf16"], kwargs["model_init_kwargs"]) == (True, False, {"dtype": "float32"})


def test_grpo_config_accepts_the_kwargs(vs_trl, shared):
    trl = pytest.importorskip("trl")
    config = trl.GRPOConfig(**vs_trl.grpo_config_kwargs(shared, "/tmp/vs_trl_test"), reward_weights=[1.0, 0.0])
    assert config.generation_batch_size == shared["batch_size"]
    assert config.num_generations == shared["rollouts_per_example"]


def test_trl_reward_funcs_equal_the_rubric(vs_trl):
    env = load_environment("one-word", correct_weight=1.0, correct_one_word_weight=1.0, format_weight=0.5)
    funcs, weights = vs_trl.trl_reward_funcs(env.rubric)
    assert [f.__name__ for f in funcs] == ["one_word", "correct", "correct_one_word"]
    assert weights == [0.5, 1.0, 1.0]
    prompt = [{"role": "user", "content": "What is the capital of France? Reply in one word."}]
    replies = ["Paris", "It is Paris.", "London"]
    completions = [[{"role": "assistant", "content": r}] for r in replies]
    got = {f.__name__: f(prompts=[prompt] * 3, completions=completions, answer=["Paris"] * 3) for f in funcs}
    example = Example(0, prompt, answer="Paris")
    for i, completion in enumerate(completions):
        rollout = Rollout(0, "one-word", prompt, completion, [])
        _, metrics = asyncio.run(env.rubric.score(rollout, example))
        assert {name: values[i] for name, values in got.items()} == metrics
    assert got["correct_one_word"] == [1.0, pytest.approx(1 / 3), 0.0]


def test_rl_toml_drops_the_eval_only(vs_trl, tmp_path):
    data = tomllib.loads(vs_trl.rl_toml(EXAMPLE, tmp_path).read_text())
    original = tomllib.loads(EXAMPLE.read_text())
    original["orchestrator"].pop("eval", None)
    assert data == original

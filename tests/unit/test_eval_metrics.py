"""Eval metrics on hand-made rollouts: unbiased pass@k, avg@n, lengths, truncation; `evaluate` with a fake client."""

from __future__ import annotations

import asyncio
import tomllib
from math import comb
from pathlib import Path

import pytest

from prime_rl.environments import Completion, Example, Rubric, SingleTurnEnv
from prime_rl.environments.types import Rollout, SamplingConfig, Turn
from prime_rl.eval.config import EvalConfig, OnlineEvalConfig
from prime_rl.eval.evaluate import evaluate, online_eval
from prime_rl.eval.metrics import group_metrics, k_values, pass_at_k
from prime_rl.eval.report import results_table, rubric_table
from prime_rl.eval.server import policy_targets, server_config, write_server_config
from prime_rl.inference.config import InferenceConfig
from prime_rl.utils.config import ConfigError, parse_config

EXAMPLES = Path(__file__).parents[2] / "examples"


def test_pass_at_k_pinned_and_equal_to_the_binomial_formula():
    assert pass_at_k(4, 1, 1) == pytest.approx(0.25)
    assert pass_at_k(4, 1, 2) == pytest.approx(0.5)  # 1 - C(3,2)/C(4,2) = 1 - 3/6
    assert pass_at_k(4, 2, 2) == pytest.approx(5 / 6)  # 1 - C(2,2)/C(4,2)
    assert pass_at_k(5, 0, 3) == 0.0
    assert pass_at_k(4, 3, 2) == 1.0  # fewer than k failures: every k-subset passes
    for n in range(1, 9):
        for c in range(n + 1):
            for k in range(1, n + 1):
                assert pass_at_k(n, c, k) == pytest.approx(1 - comb(n - c, k) / comb(n, k))
    with pytest.raises(ValueError, match=r"n=2, c=3, k=1"):
        pass_at_k(2, 3, 1)
    with pytest.raises(ValueError, match=r"n=2, c=1, k=3"):
        pass_at_k(2, 1, 3)


def test_k_values():
    assert [k_values(n) for n in (1, 2, 3, 4, 6, 8)] == [[1], [1, 2], [1, 2, 3], [1, 2, 4], [1, 2, 4, 6], [1, 2, 4, 8]]


def rollout(reward: float, masks: list[list[bool]], truncated: bool = False, error: str | None = None) -> Rollout:
    turns = [Turn([1], [2] * len(m), [0.0] * len(m), m, 1.0, 0, "stop") for m in masks]
    return Rollout(0, "e", [], [], turns, reward, {"fn": reward * 2}, truncated, error)


def test_group_metrics_on_hand_made_rollouts():
    groups = [
        [rollout(1.0, [[True] * 4]), rollout(0.0, [[True] * 6], truncated=True), rollout(0.5, [[True, False, True]])],
        [rollout(0.0, [[True] * 2, [False, True]]), rollout(0.0, [], error="boom"), rollout(0.0, [[True]])],
    ]
    m = group_metrics(groups, pass_threshold=1.0)
    assert m["avg@3"] == pytest.approx(1.5 / 6)
    assert m["pass@1"] == pytest.approx((1 / 3 + 0) / 2)
    assert m["pass@2"] == pytest.approx((2 / 3 + 0) / 2)
    assert m["pass@3"] == pytest.approx(0.5)
    assert m["completion_len"] == pytest.approx((4 + 6 + 2 + 3 + 0 + 1) / 6)  # model tokens only
    assert m["truncated"] == pytest.approx(1 / 6)
    assert m["errored"] == pytest.approx(1 / 6)
    assert m["num_examples"] == 2.0
    assert m["reward/fn"] == pytest.approx(3.0 / 6)
    assert group_metrics(groups, pass_threshold=0.5)["pass@1"] == pytest.approx((2 / 3) / 2)
    with pytest.raises(ValueError, match=r"groups have different sizes: \[2, 3\]"):
        group_metrics([groups[0], groups[1][:2]])


class ScriptedClient:
    """Answers example `i` of a prompt with the scripted replies for that prompt, in order."""

    def __init__(self, replies: dict[str, list[str]]):
        self.replies = {k: list(v) for k, v in replies.items()}
        self.seeds: dict[str, int | None] = {}

    async def chat(self, messages, sampling, n=1, seed=None):
        self.seeds[messages[-1]["content"]] = seed
        texts = [self.replies[messages[-1]["content"]].pop(0) for _ in range(n)]
        finish = "length" if sampling.max_tokens == 1 else "stop"
        return [Completion(t, [1, 2], [3] * len(t), [0.0] * len(t), finish, 7) for t in texts]


def exact(completion, answer) -> float:
    return float(completion[-1]["content"] == answer)


def env_with(prompts: list[str], answers: list[str], eval_split: bool = True) -> SingleTurnEnv:
    examples = [
        Example(i, [{"role": "user", "content": p}], a) for i, (p, a) in enumerate(zip(prompts, answers, strict=True))
    ]
    return SingleTurnEnv("x", examples, Rubric([exact]), examples if eval_split else [])


def test_evaluate_runs_every_env_eval_split_with_k_samples():
    envs = {"a": env_with(["p1", "p2", "p3"], ["y", "y", "y"]), "b": env_with(["q1"], ["zz"])}
    client = ScriptedClient({"p1": ["y", "n"], "p2": ["n", "n"], "p3": ["unused"], "q1": ["zz", "zz"]})
    out = asyncio.run(evaluate(envs, client, {"a": 2, "b": None}, 2, SamplingConfig(max_tokens=5), max_concurrent=1))
    assert out == {
        "a/avg@2": 0.25,
        "a/pass@1": 0.25,
        "a/pass@2": 0.5,
        "a/completion_len": 1.0,
        "a/truncated": 0.0,
        "a/errored": 0.0,
        "a/num_examples": 2.0,
        "a/reward/exact": 0.25,
        "b/avg@2": 1.0,
        "b/pass@1": 1.0,
        "b/pass@2": 1.0,
        "b/completion_len": 2.0,
        "b/truncated": 0.0,
        "b/errored": 0.0,
        "b/num_examples": 1.0,
        "b/reward/exact": 1.0,
    }
    truncated = asyncio.run(
        evaluate({"b": env_with(["q1"], ["z"])}, ScriptedClient({"q1": ["z"]}), None, 1, SamplingConfig(max_tokens=1))
    )
    assert truncated["b/truncated"] == 1.0 and truncated["b/avg@1"] == 1.0
    with pytest.raises(ValueError, match="environment `c` has no eval split"):
        asyncio.run(evaluate({"c": env_with(["p"], ["y"], eval_split=False)}, client, None, 1, SamplingConfig()))


def test_seeded_sampling_differs_per_example_and_online_eval_prefixes_keys():
    envs = {"a": env_with(["p1", "p2"], ["y", "y"])}
    client = ScriptedClient({"p1": ["y"], "p2": ["n"]})
    asyncio.run(evaluate(envs, client, None, 1, SamplingConfig(), seed=10))
    assert client.seeds == {"p1": 10, "p2": 11}  # seed + example_id

    config = OnlineEvalConfig(interval=5, env=[{"id": "x", "name": "a", "num_examples": 1}], rollouts_per_example=2)
    client = ScriptedClient({"p1": ["y", "n"]})
    out = asyncio.run(online_eval(config, envs, client, seed=3))
    assert out["eval/a/avg@2"] == 0.5 and out["eval/a/pass@2"] == 1.0 and out["eval/a/num_examples"] == 1.0
    assert all(key.startswith("eval/a/") for key in out) and client.seeds == {"p1": 3}


def test_policy_targets_and_config_checks(tmp_path: Path):
    for step, stable in ((1, True), (3, True), (5, False)):
        d = tmp_path / "run" / "weights" / f"step_{step}"
        d.mkdir(parents=True)
        if stable:
            (d / "STABLE").touch()
    run = tmp_path / "run"
    assert policy_targets(EvalConfig()) == [("base", None)]
    config = EvalConfig(weights_dir=run)
    assert policy_targets(config) == [
        ("base", None),
        ("step_1", run / "weights" / "step_1"),
        ("step_3", run / "weights" / "step_3"),
    ]
    config = EvalConfig(weights_dir=run / "weights", eval_base=False, steps=[3])
    assert policy_targets(config) == [("step_3", run / "weights" / "step_3")]
    with pytest.raises(ConfigError, match=r"steps \[5\] under .*run/weights \(available: \[1, 3\]\)"):
        policy_targets(EvalConfig(weights_dir=run, steps=[1, 5]))
    with pytest.raises(ConfigError, match=r"`steps` needs `weights_dir`"):
        parse_config(EvalConfig, ["--steps", "[1]"])
    with pytest.raises(ConfigError, match=r"weights_dir `.*nowhere` is not a directory"):
        policy_targets(parse_config(EvalConfig, ["--weights-dir", str(tmp_path / "nowhere")]))
    with pytest.raises(ConfigError, match=r"environment names must be unique"):
        parse_config(EvalConfig, ["--env", '[{"id": "reverse-text"}, {"id": "reverse-text"}]'])


def test_shipped_eval_config_parses():
    config = parse_config(EvalConfig, ["@", str(EXAMPLES / "reverse_text" / "eval.toml")])
    assert config.weights_dir == Path("outputs/reverse_text/sft") and config.env[0].id == "reverse-text"
    assert config.rollouts_per_example == 2 and config.sampling.max_tokens == 48


def test_reverse_text_before_after_config_matches_the_rl_example():
    config = parse_config(EvalConfig, ["@", str(EXAMPLES / "reverse_text" / "eval_rl.toml")])
    rl = tomllib.loads((EXAMPLES / "reverse_text" / "rl.toml").read_text())
    # the SFT start RL began from, and the RL run's final export
    assert config.model.name == rl["model"]["name"] and config.eval_base
    assert config.weights_dir == Path(rl["output_dir"]) and config.steps == [rl["max_steps"]]
    assert config.sampling.temperature == rl["orchestrator"]["sampling"]["temperature"]
    assert config.sampling.max_tokens == rl["orchestrator"]["sampling"]["max_tokens"]


def test_results_table():
    metrics = {
        "a/avg@2": 0.25,
        "a/pass@1": 0.25,
        "a/pass@2": 0.5,
        "a/completion_len": 3.5,
        "a/truncated": 0.5,
        "a/errored": 0.0,
    }
    table = results_table({"base": {"metrics": metrics}, "step_10": {"metrics": metrics}}, ["a"], 2)
    assert table.splitlines() == [
        "policy  | env |  avg@2 | pass@1 | pass@2 | len | truncated | errored",
        "--------+-----+--------+--------+--------+-----+-----------+--------",
        "base    | a   | 0.2500 | 0.2500 | 0.5000 | 3.5 |      0.50 |    0.00",
        "step_10 | a   | 0.2500 | 0.2500 | 0.5000 | 3.5 |      0.50 |    0.00",
    ]


def test_rubric_table_shows_every_rubric_function_when_an_env_logs_several():
    results = {
        "base": {"metrics": {"a/avg@2": 0.3, "a/reward/lcs": 0.3, "a/reward/rev": 0.0, "b/reward/solved": 0.5}},
        "step_8": {"metrics": {"a/avg@2": 0.4, "a/reward/lcs": 0.4, "a/reward/rev": 0.125, "b/reward/solved": 1.0}},
    }
    assert rubric_table(results, ["a", "b"]).splitlines() == [
        "policy | env |    lcs |    rev | solved",
        "-------+-----+--------+--------+-------",
        "base   | a   | 0.3000 | 0.0000 |      -",
        "base   | b   |      - |      - | 0.5000",
        "step_8 | a   | 0.4000 | 0.1250 |      -",
        "step_8 | b   |      - |      - | 1.0000",
    ]
    assert rubric_table(results, ["b"]) is None  # one function: the reward column says it all


def test_eval_starts_the_server_of_an_inference_config(tmp_path: Path):
    run = tmp_path / "run"
    (run / "weights").mkdir(parents=True)
    argv = ["--model.name", "m", "--weights-dir", str(run), "--inference.model.dtype", "float32", "--seed", "5"]
    config = parse_config(EvalConfig, [*argv, "--inference.num-threads", "1"])
    assert config.own_server and config.inference.model.name == "m" and config.inference.seed == 5
    assert (config.inference.server.port, config.inference.log.file, config.inference.num_threads) == (0, False, 1)
    inference = server_config(config, 1234)
    path = write_server_config(inference, tmp_path / "inference.toml")
    written = parse_config(InferenceConfig, ["@", str(path)])
    assert (
        written.model_dump() == inference.model_dump()
        and written.output_dir == run.resolve()
        and written.server.port == 1234
    )
    assert written.model.dtype == "float32"
    kept = server_config(parse_config(EvalConfig, [*argv, "--inference.output-dir", str(tmp_path)]), 1)
    assert kept.output_dir == tmp_path


def test_eval_model_name_is_shared_with_its_server_and_a_running_server_is_used_as_is():
    with pytest.raises(ConfigError, match=r"`inference.model.name` = 'b' contradicts the shared `model.name` = 'a'"):
        parse_config(EvalConfig, ["--model.name", "a", "--inference.model.name", "b"])
    assert parse_config(EvalConfig, ["--inference.model.name", "b"]).model.name == "b"
    running = parse_config(EvalConfig, ["--client.base-url", "http://h:1/v1"])
    assert not running.own_server and running.client.base_url == ["http://h:1/v1"]
    with pytest.raises(ConfigError, match=r"eval uses one server"):
        parse_config(EvalConfig, ["--client.base-url", '["http://h:1/v1", "http://h:2/v1"]'])

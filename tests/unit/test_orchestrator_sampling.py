"""Every sampling parameter of the config reaches the request body; seeds differ per group and per rollout, and a
resumed step asks for the same seeds again."""

import asyncio

from test_orchestrator_loop import FakeServer, _run

from prime_rl.client.wire import request_body
from prime_rl.environments.base import Environment
from prime_rl.environments.rubric import Rubric
from prime_rl.environments.types import Example, Rollout, SamplingConfig
from prime_rl.orchestrator.generate import request_seed, run_seeded_group

SAMPLING = {"temperature": 0.7, "top_p": 0.9, "top_k": 5, "min_p": 0.05, "max_tokens": 7, "min_tokens": 2,
            "stop": ["</answer>"]}  # fmt: skip


def test_request_body_carries_every_sampling_field():
    body = request_body("m", SamplingConfig(**SAMPLING), n=3, seed=None)
    assert set(SAMPLING) == set(SamplingConfig.model_fields)  # a new field must be added here too
    assert {k: body[k] for k in SAMPLING} == SAMPLING and body["seed"] is None and body["n"] == 3


def test_request_bodies_carry_all_sampling_args_and_distinct_seeds(tmp_path):
    with FakeServer() as server:
        _run(tmp_path / "a", server.port, 0, max_steps=2, sampling=SAMPLING, seed=3)
        first = list(server.bodies)
        server.bodies.clear()
        _run(tmp_path / "b", server.port, 0, max_steps=2, sampling=SAMPLING, seed=3)
    assert len(first) == 4  # 2 steps x 2 groups, one n=3 request each
    for body in first:
        assert {k: body[k] for k in SAMPLING} == SAMPLING
        assert body["n"] == 3 and body["logprobs"] is True and body["return_token_ids"] is True
    seeds = [body["seed"] for body in first]
    assert len(set(seeds)) == 4  # every group of every step has its own stream
    for step in (0, 1):  # async level 0: step 1 starts after step 0; groups within a step run concurrently
        assert sorted(seeds[2 * step : 2 * step + 2]) == sorted(request_seed(3, step, group) for group in (0, 1))
    assert sorted(seeds) == sorted(body["seed"] for body in server.bodies)  # same seed, same steps: same requests


class EpisodeEnv(Environment):
    """An environment without its own `run_group`: the base class runs `n` separate episodes."""

    name = "episodes"
    rubric = Rubric([])

    def __init__(self):
        self.seeds = []

    def dataset(self):
        return [Example(0, [{"role": "user", "content": "hi"}])]

    def eval_dataset(self):
        return []

    async def rollout(self, client, example: Example, sampling: SamplingConfig, seed: int | None = None) -> Rollout:
        self.seeds.append(seed)
        return Rollout(example.example_id, self.name, example.prompt, [], [])


def test_episodes_of_a_group_get_distinct_seeds():
    env = EpisodeEnv()
    seeds = [request_seed(0, 5, 1, r) for r in range(-1, 4)]
    rollouts = asyncio.run(run_seeded_group(env, None, env.dataset()[0], SamplingConfig(), 4, seeds))
    assert len(rollouts) == 4
    assert sorted(env.seeds) == sorted(seeds[1:]) and len(set(env.seeds)) == 4


def test_request_seed_is_stable_and_63_bit():
    assert request_seed(0, 1, 2, 3) == request_seed(0, 1, 2, 3)
    assert len({request_seed(0, s, g, r) for s in range(5) for g in range(5) for r in range(-1, 5)}) == 150
    assert all(0 <= request_seed(7, s, 0) < 2**63 for s in range(20))

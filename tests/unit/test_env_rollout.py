"""Environment.run / run_group with a fake sampling client: scoring, error handling, multi-turn exact prefixes."""

from __future__ import annotations

import asyncio
import logging

import pytest

from prime_rl.environments import (
    Completion,
    Example,
    InferenceError,
    Rubric,
    SamplingConfig,
    SingleTurnEnv,
    load_environment,
)
from prime_rl.orchestrator.trajectories import rollout_to_samples
from prime_rl.utils.models import resolve_model_path


class FakeClient:
    """Answers with scripted replies, tokenised with the real chat template; records every request."""

    def __init__(self, tokenizer, replies: list[str], policy_step: int = 2):
        self.tokenizer, self.replies, self.policy_step = tokenizer, list(replies), policy_step
        self.requests: list[tuple[str, list]] = []

    def _complete(self, prompt_ids: list[int], n: int) -> list[Completion]:
        out = []
        for _ in range(n):
            text = self.replies.pop(0)
            ids = [*self.tokenizer.encode(text, add_special_tokens=False), self.tokenizer.eos_token_id]
            logprobs = [-0.5 - 0.01 * i for i in range(len(ids))]
            out.append(Completion(text, list(prompt_ids), ids, logprobs, "stop", self.policy_step))
        return out

    async def chat(self, messages, sampling, n=1, seed=None):
        self.requests.append(("chat", [dict(m) for m in messages]))
        ids = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=False)
        return self._complete(ids, n)

    async def chat_tokens(self, prompt_ids, sampling, n=1, seed=None, messages=None):
        self.requests.append(("tokens", list(prompt_ids)))
        return self._complete(prompt_ids, n)


class BrokenClient:
    async def chat(self, messages, sampling, n=1, seed=None):
        raise InferenceError("inference server(s) http://127.0.0.1:1/v1 failed 6 attempts")


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(resolve_model_path("smollm2-135m-instruct"))


def toy_env(reward_fn) -> SingleTurnEnv:
    examples = [Example(i, [{"role": "user", "content": f"q{i}"}], answer="yes") for i in range(3)]
    return SingleTurnEnv("toy", examples, Rubric([reward_fn]))


def test_single_turn_group_scores_each_rollout(tokenizer):
    def exact(completion, answer):
        return float(completion[-1]["content"] == answer)

    env = toy_env(exact)
    client = FakeClient(tokenizer, ["yes", "no", "yes"], policy_step=7)
    rollouts = asyncio.run(env.run_group(client, env.dataset()[1], SamplingConfig(temperature=0.8), n=3))
    assert [r.reward for r in rollouts] == [1.0, 0.0, 1.0]
    assert [r.metrics for r in rollouts] == [{"exact": 1.0}, {"exact": 0.0}, {"exact": 1.0}]
    assert len(client.requests) == 1  # one request with n=3
    turn = rollouts[0].turns[0]
    assert turn.completion_ids[-1] == tokenizer.eos_token_id
    assert (turn.temperature, turn.policy_step, turn.completion_mask) == (0.8, 7, [True, True])
    assert rollouts[0].example_id == 1 and rollouts[0].env_name == "toy" and rollouts[0].error is None


def test_raising_reward_fn_marks_rollout_errored(tokenizer, caplog):
    def broken(completion):
        raise KeyError("missing")

    env = toy_env(broken)
    with caplog.at_level(logging.WARNING, logger="prime_rl"):
        rollout = asyncio.run(env.run(FakeClient(tokenizer, ["yes"]), env.dataset()[2], SamplingConfig()))
    assert rollout.reward == 0.0
    assert rollout.error.startswith("reward function `broken` failed: KeyError: 'missing'")
    assert "toy example 2: reward function `broken` failed" in caplog.text
    (sample,) = rollout_to_samples(rollout)
    assert not any(sample.completion_mask)


def test_non_finite_reward_is_an_error(tokenizer):
    env = toy_env(lambda completion: float("nan"))
    rollout = asyncio.run(env.run(FakeClient(tokenizer, ["yes"]), env.dataset()[0], SamplingConfig()))
    assert rollout.error == "reward function `<lambda>` returned nan"


def test_async_reward_fn_and_weights(tokenizer):
    async def length(completion):
        return len(completion[-1]["content"])

    def one(prompt, completion, answer, info):
        return 1.0

    examples = [Example(0, [{"role": "user", "content": "q"}])]
    env = SingleTurnEnv("toy", examples, Rubric([length, one], [0.5, 2.0]))
    rollout = asyncio.run(env.run(FakeClient(tokenizer, ["abcd"]), examples[0], SamplingConfig()))
    assert (rollout.reward, rollout.metrics) == (4.0, {"length": 4.0, "one": 1.0})


def test_failed_generation_gives_errored_rollouts():
    env = toy_env(lambda completion: 1.0)
    rollouts = asyncio.run(env.run_group(BrokenClient(), env.dataset()[0], SamplingConfig(), n=2))
    assert len(rollouts) == 2
    assert all(r.reward == 0.0 and r.turns == [] for r in rollouts)
    assert rollouts[0].error.startswith("rollout failed: InferenceError: inference server(s) http://127.0.0.1:1/v1")
    single = asyncio.run(env.run(BrokenClient(), env.dataset()[0], SamplingConfig()))
    assert single.error == rollouts[0].error


def test_rubric_rejects_unknown_reward_arguments():
    def bad(completion, state):
        return 0.0

    with pytest.raises(TypeError, match=r"reward function `bad` has arguments \['state'\]"):
        Rubric([bad])


def test_guess_number_multi_turn_exact_prefixes(tokenizer):
    env = load_environment("guess-number", max_turns=4)
    env.setup(tokenizer)
    example = next(ex for ex in env.dataset() if ex.answer == "7")
    client = FakeClient(tokenizer, ["<answer>5</answer>", "I think 9", "<answer>7</answer>"])
    rollout = asyncio.run(env.run(client, example, SamplingConfig()))

    assert [m["content"] for m in rollout.completion] == [
        "<answer>5</answer>",
        "Higher.",
        "I think 9",
        "Lower.",
        "<answer>7</answer>",
    ]
    assert rollout.metrics == {"solved": 1.0, "efficiency": 0.5, "num_guesses": 3.0}
    assert rollout.reward == 1.0
    assert [kind for kind, _ in client.requests] == ["chat", "tokens", "tokens"]

    # The token prompt of each later turn is previous prompt + sampled ids + rendered environment message, and it
    # equals the chat template applied to the whole conversation (the SmolLM2 template is prefix-consistent).
    t1, t2, t3 = rollout.turns
    env_ids = tokenizer.encode(
        "\n<|im_start|>user\nHigher.<|im_end|>\n<|im_start|>assistant\n", add_special_tokens=False
    )
    assert t2.prompt_ids == t1.prompt_ids + t1.completion_ids + env_ids
    conversation = example.prompt + rollout.completion[:4]
    full = tokenizer.apply_chat_template(conversation, add_generation_prompt=True, tokenize=True, return_dict=False)
    assert t3.prompt_ids == full

    (sample,) = rollout_to_samples(rollout)
    assert sample.prompt_ids == t1.prompt_ids
    n_env = len(env_ids)
    assert sample.completion_ids == t3.prompt_ids[len(t1.prompt_ids) :] + t3.completion_ids
    expected_mask = [True] * len(t1.completion_ids) + [False] * n_env + [True] * len(t2.completion_ids)
    expected_mask += [False] * (len(t3.prompt_ids) - len(t2.prompt_ids) - len(t2.completion_ids))
    expected_mask += [True] * len(t3.completion_ids)
    assert sample.completion_mask == expected_mask
    model_lps = [lp for lp, m in zip(sample.completion_logprobs, sample.completion_mask, strict=True) if m]
    assert model_lps == t1.completion_logprobs + t2.completion_logprobs + t3.completion_logprobs
    assert all(lp == 0.0 for lp, m in zip(sample.completion_logprobs, sample.completion_mask, strict=True) if not m)


def test_guess_number_stops_at_max_turns_without_trailing_feedback(tokenizer):
    env = load_environment("guess-number", max_turns=2)
    env.setup(tokenizer)
    example = next(ex for ex in env.dataset() if ex.answer == "7")
    rollout = asyncio.run(env.run(FakeClient(tokenizer, ["1", "banana"]), example, SamplingConfig()))
    assert [m["role"] for m in rollout.completion] == ["assistant", "user", "assistant"]
    assert rollout.reward == 0.0 and rollout.metrics["num_guesses"] == 2.0
    assert rollout.error is None


def test_multi_turn_without_tokenizer_is_an_errored_rollout(tokenizer):
    env = load_environment("guess-number")
    rollout = asyncio.run(env.run(FakeClient(tokenizer, []), env.dataset()[0], SamplingConfig()))
    assert "call env.setup(tokenizer) first" in rollout.error


def test_template_that_rewrites_replies_falls_back_to_messages_and_splits(tokenizer):
    import copy

    from prime_rl.environments.multi_turn import render_env_tokens

    rewriting = copy.deepcopy(tokenizer)
    rewriting.chat_template = tokenizer.chat_template.replace("message['content']", "message['content'] | upper")
    messages = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "<answer>5</answer>"}]
    sampled = [*tokenizer.encode("<answer>5</answer>", add_special_tokens=False), tokenizer.eos_token_id]
    assert render_env_tokens(rewriting, messages, [{"role": "user", "content": "Higher."}], sampled) is None

    env = load_environment("guess-number", max_turns=3)
    env.setup(rewriting)
    example = next(ex for ex in env.dataset() if ex.answer == "7")
    client = FakeClient(rewriting, ["<answer>5</answer>", "<answer>9</answer>", "<answer>7</answer>"])
    rollout = asyncio.run(env.run(client, example, SamplingConfig()))
    assert [kind for kind, _ in client.requests] == ["chat", "chat", "chat"]
    samples = rollout_to_samples(rollout)
    assert len(samples) == 3
    assert [s.completion_ids for s in samples] == [t.completion_ids for t in rollout.turns]
    assert all(all(s.completion_mask) for s in samples)

"""Tool calls at the protocol level: `tools` rendered through SmolLM2's chat template (Hermes-style fallback),
`<tool_call>` blocks of a scripted model output parsed into OpenAI `tool_calls`, tool messages accepted back."""

from __future__ import annotations

import asyncio
import json
from typing import Literal

import httpx
import pytest

from prime_rl.chat import parse_tool_calls, render_chat, supports_tools
from prime_rl.environments.calculator import calculator
from prime_rl.environments.tools import tool_schema
from prime_rl.inference.app import create_app
from prime_rl.inference.engines.base import CompletionChoice, Engine, GenerationResult
from prime_rl.utils.models import resolve_model_path

CALL = '<tool_call>\n{"name": "calculator", "arguments": {"expression": "2 + 3"}}\n</tool_call>'
TOOLS = [tool_schema(calculator)]


class ScriptedEngine(Engine):
    """Answers every request with the next scripted reply texts (tokenised, EOS appended); records the prompts."""

    def __init__(self, tokenizer, replies: list[str]):
        self.tokenizer, self.replies = tokenizer, list(replies)
        self.prompts: list[list[int]] = []
        self.max_model_len, self.policy_step = 4096, 3

    def start(self) -> None: ...

    def shutdown(self) -> None: ...

    def check(self, prompt_ids, params) -> int:
        return 64

    async def generate(self, prompt_ids, params, on_token=None) -> GenerationResult:
        self.prompts.append(list(prompt_ids))
        choices = []
        for index in range(params.n):
            text = self.replies.pop(0)
            ids = [*self.tokenizer.encode(text, add_special_tokens=False), self.tokenizer.eos_token_id]
            for t, token in enumerate(ids):
                if on_token is not None:
                    on_token(index, token, -0.5, [], t == len(ids) - 1)
            choices.append(CompletionChoice(ids, [-0.5] * len(ids), None, text, "stop"))
        return GenerationResult(list(prompt_ids), choices, self.policy_step)

    async def update_weights(self, weight_dir, step) -> None: ...

    async def reload_weights(self) -> None: ...


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(resolve_model_path("smollm2-135m-instruct"))


def post(tokenizer, replies: list[str], body: dict, route: str = "/v1/chat/completions") -> tuple[int, dict, list]:
    engine = ScriptedEngine(tokenizer, replies)
    app = create_app(engine, tokenizer, "smollm2", set(), output_dir=__import__("pathlib").Path("."))

    async def send() -> httpx.Response:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
            return await client.post(route, json=body)

    response = asyncio.run(send())
    text = response.text
    return response.status_code, (response.json() if not text.startswith("data:") else text), engine.prompts


def ask(content: str = "What is 2 + 3?") -> list[dict]:
    return [{"role": "user", "content": content}]


def test_single_call_is_parsed_with_finish_reason_tool_calls(tokenizer):
    status, body, _ = post(tokenizer, [f"Let me compute.\n{CALL}"], {"messages": ask(), "tools": TOOLS})
    assert status == 200
    choice = body["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] == "Let me compute."
    (call,) = choice["message"]["tool_calls"]
    assert call["type"] == "function" and call["id"].startswith("call_") and len(call["id"]) == 29
    assert call["function"] == {"name": "calculator", "arguments": '{"expression": "2 + 3"}'}


def test_multiple_calls_and_a_malformed_one(tokenizer):
    text = (
        '<tool_call>{"name": "calculator", "arguments": {"expression": "1+1"}}</tool_call>\n'
        "<tool_call>{not json}</tool_call>\n"
        '<tool_call>{"name": "calculator", "arguments": "{\\"expression\\": \\"2*2\\"}"}</tool_call>'
    )
    content, calls = parse_tool_calls(text)
    assert content == "<tool_call>{not json}</tool_call>"
    assert [c["function"]["arguments"] for c in calls] == ['{"expression": "1+1"}', '{"expression": "2*2"}']
    assert len({c["id"] for c in calls}) == 2


@pytest.mark.parametrize(
    "text",
    [
        '<tool_call>{"name": "calculator", "arguments": [1]}</tool_call>',
        '<tool_call>{"arguments": {}}</tool_call>',
        '<tool_call>["calculator"]</tool_call>',
        '<tool_call>{"name": "calculator", "arguments": {"expression": "1"}}',
        "no call at all",
    ],
)
def test_malformed_or_unclosed_calls_stay_plain_content(tokenizer, text):
    assert parse_tool_calls(text) == (text, [])
    status, body, _ = post(tokenizer, [text], {"messages": ask(), "tools": TOOLS})
    choice = body["choices"][0]
    assert (status, choice["finish_reason"], choice["message"]) == (200, "stop", {"role": "assistant", "content": text})


def test_without_tools_or_with_tool_choice_none_nothing_is_parsed(tokenizer):
    for extra in ({}, {"tools": TOOLS, "tool_choice": "none"}):
        _, body, _ = post(tokenizer, [CALL], {"messages": ask(), **extra})
        assert body["choices"][0]["message"] == {"role": "assistant", "content": CALL}
        assert body["choices"][0]["finish_reason"] == "stop"


def test_tool_choice_other_than_auto_or_none_is_a_400(tokenizer):
    for choice in ("required", {"type": "function", "function": {"name": "calculator"}}):
        status, body, _ = post(tokenizer, [], {"messages": ask(), "tools": TOOLS, "tool_choice": choice})
        assert status == 400 and body["error"]["param"] == "tool_choice"
        assert body["error"]["message"].startswith("`tool_choice` must be `auto` or `none`")


def test_bad_tools_are_400s_naming_the_field(tokenizer):
    bad_name = [{"type": "function", "function": {"name": "no spaces"}}]
    status, body, _ = post(tokenizer, [], {"messages": ask(), "tools": bad_name})
    assert (status, body["error"]["param"]) == (400, "tools.0.function.name")
    twice = TOOLS + TOOLS
    status, body, _ = post(tokenizer, [], {"messages": ask(), "tools": twice})
    assert body["error"]["message"] == "`tools.1.function.name`: `calculator` is declared twice"
    wrong_role = [*ask(), {"role": "user", "content": "x", "tool_calls": []}]
    status, body, _ = post(tokenizer, [], {"messages": wrong_role})
    assert (
        body["error"]["message"]
        == "`messages.1.tool_calls`: only assistant messages carry tool calls (this one is `user`)"
    )
    bad_call = [*ask(), {"role": "assistant", "content": None, "tool_calls": [{"function": {"name": "f"}}]}]
    status, body, _ = post(tokenizer, [], {"messages": bad_call})
    assert (status, body["error"]["param"]) == (400, "messages.1.tool_calls.0")


def test_smollm2_template_gets_the_fallback_rendering(tokenizer):
    assert not supports_tools(tokenizer)
    call = {
        "id": "call_1",
        "type": "function",
        "function": {"name": "calculator", "arguments": '{"expression": "2 + 3"}'},
    }
    messages = [
        *ask(),
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "call_1", "content": "5"},
        {"role": "tool", "tool_call_id": "call_2", "content": "6"},
    ]
    text = render_chat(tokenizer, messages, TOOLS, tokenize=False)
    signature = json.dumps(TOOLS[0])
    assert text.startswith(
        "<|im_start|>system\nYou can call functions (tools) to help answer. Their JSON signatures are listed between "
        f"<tools> and </tools>:\n<tools>\n{signature}\n</tools>\n"
    )
    assert text.endswith(
        "<|im_start|>user\nWhat is 2 + 3?<|im_end|>\n"
        f"<|im_start|>assistant\n{CALL}<|im_end|>\n"
        "<|im_start|>user\n<tool_response>\n5\n</tool_response>\n<tool_response>\n6\n</tool_response><|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    status, body, prompts = post(tokenizer, ["5"], {"messages": messages, "tools": TOOLS, "return_token_ids": True})
    assert status == 200 and body["prompt_token_ids"] == prompts[0] == tokenizer.encode(text, add_special_tokens=False)
    system = [{"role": "system", "content": "Be brief."}, *ask()]
    assert render_chat(tokenizer, system, TOOLS, tokenize=False).startswith(
        "<|im_start|>system\nBe brief.\n\nYou can call functions (tools)"
    )


def test_a_template_that_reads_tools_gets_them_natively(tokenizer):
    import copy

    native = copy.deepcopy(tokenizer)
    native.chat_template = (
        "{% for t in tools or [] %}TOOL {{ t.function.name }}\n{% endfor %}"
        "{% for m in messages %}{{ m.role }}: {{ m.content or '' }}"
        "{% for c in m.tool_calls or [] %} CALL {{ c.function.name }} {{ c.function.arguments.expression }}{% endfor %}"
        "{{ '\\n' }}{% endfor %}"
    )
    assert supports_tools(native)
    call = {"id": "c", "type": "function", "function": {"name": "calculator", "arguments": '{"expression": "2+3"}'}}
    messages = [
        *ask("q"),
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "content": "5"},
    ]
    text = render_chat(native, messages, TOOLS, tokenize=False)
    assert text == "TOOL calculator\nuser: q\nassistant:  CALL calculator 2+3\ntool: 5\n"


def test_token_route_parses_tool_calls_and_tokens_stay_raw(tokenizer):
    body = {"messages": [], "tokens": [1, 2, 3], "tools": TOOLS, "logprobs": True, "return_token_ids": True}
    status, out, prompts = post(tokenizer, [CALL], body, route="/v1/chat/completions/tokens")
    choice = out["choices"][0]
    assert status == 200 and prompts == [[1, 2, 3]] and choice["finish_reason"] == "tool_calls"
    ids = [*tokenizer.encode(CALL, add_special_tokens=False), tokenizer.eos_token_id]
    assert choice["token_ids"] == ids and [e["logprob"] for e in choice["logprobs"]["content"]] == [-0.5] * len(ids)


def test_streamed_tool_call_is_held_back_and_sent_in_the_final_chunk(tokenizer):
    status, text, _ = post(tokenizer, [f"Sure. {CALL}"], {"messages": ask(), "tools": TOOLS, "stream": True})
    events = [json.loads(line[6:]) for line in text.split("\n\n") if line.startswith("data: {")]
    choices = [e["choices"][0] for e in events if e["choices"]]
    streamed = "".join(c["delta"].get("content") or "" for c in choices)
    assert status == 200 and "<tool" not in streamed and streamed.strip() == "Sure."
    final = choices[-1]
    assert final["finish_reason"] == "tool_calls"
    assert [c["function"]["name"] for c in final["delta"]["tool_calls"]] == ["calculator"]
    assert final["delta"]["tool_calls"][0]["index"] == 0


# ---------------------------------------------------------------- ToolEnv against the app with a scripted engine


def run_tool_env(tokenizer, env, replies: list[str], example):
    from prime_rl.client import InferenceClient
    from prime_rl.environments import SamplingConfig

    engine = ScriptedEngine(tokenizer, replies)
    app = create_app(engine, tokenizer, "smollm2", set(), output_dir=__import__("pathlib").Path("."))
    env.setup(tokenizer)

    async def go():
        client = InferenceClient(["http://test/v1"], "smollm2")
        client._http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app))
        try:
            return await env.run(client, example, SamplingConfig(max_tokens=64))
        finally:
            await client.close()

    return asyncio.run(go()), engine.prompts


def test_tool_schema_from_signature_and_docstring():
    def search(query: str, limit: int = 3, mode: Literal["fast", "exact"] = "fast", tags: list[str] | None = None):
        """Searches the notes.

        Args:
            query: words to look for,
                all of them.
            limit: most results returned.
        """

    assert tool_schema(search) == {
        "type": "function",
        "function": {
            "name": "search",
            "description": "Searches the notes.",
            "parameters": {
                "type": "object",
                "properties": {
                    "query": {"type": "string", "description": "words to look for, all of them."},
                    "limit": {"type": "integer", "description": "most results returned."},
                    "mode": {"type": "string", "enum": ["fast", "exact"]},
                    "tags": {"type": "array", "items": {"type": "string"}},
                },
                "required": ["query"],
            },
        },
    }

    def untyped(x):
        pass

    with pytest.raises(TypeError, match="tool `untyped` argument `x` has no type annotation"):
        tool_schema(untyped)


def test_tool_env_rollout_masks_tool_results_as_environment_tokens(tokenizer):
    from prime_rl.environments import Example, load_environment
    from prime_rl.orchestrator.trajectories import rollout_to_samples

    env = load_environment("calculator")
    example = Example(0, ask(), answer="5")
    rollout, prompts = run_tool_env(tokenizer, env, [CALL, "The answer is 5."], example)
    assert rollout.error is None and rollout.reward == 1.2
    assert rollout.metrics == {"correct": 1.0, "tool_use": 1.0, "tool_calls": 1.0, "tool_errors": 0.0}
    assert [m["role"] for m in rollout.completion] == ["assistant", "tool", "assistant"]
    call_id = rollout.completion[0]["tool_calls"][0]["id"]
    assert rollout.completion[1] == {"role": "tool", "tool_call_id": call_id, "content": "5"}
    first, second = rollout.turns
    env_ids = second.prompt_ids[len(first.prompt_ids) + len(first.completion_ids) :]
    assert (
        second.prompt_ids[: len(first.prompt_ids) + len(first.completion_ids)]
        == first.prompt_ids + first.completion_ids
    )
    assert tokenizer.decode(env_ids) == (
        "\n<|im_start|>user\n<tool_response>\n5\n</tool_response><|im_end|>\n<|im_start|>assistant\n"
    )
    assert prompts == [first.prompt_ids, second.prompt_ids]
    (sample,) = rollout_to_samples(rollout)
    n1, ne, n2 = len(first.completion_ids), len(env_ids), len(second.completion_ids)
    assert sample.completion_mask == [True] * n1 + [False] * ne + [True] * n2
    assert sample.completion_logprobs == [-0.5] * n1 + [0.0] * ne + [-0.5] * n2
    assert sample.policy_step == 3


def test_tool_env_stops_at_max_turns_and_returns_tool_errors_as_text(tokenizer):
    from prime_rl.environments import Example, Rubric, ToolEnv

    def explode(reason: str) -> str:
        """Always fails."""
        raise RuntimeError(reason)

    bad = '<tool_call>{"name": "calculator", "arguments": {"expression": "2 +"}}</tool_call>'
    unknown = '<tool_call>{"name": "search", "arguments": {}}</tool_call>'
    boom = '<tool_call>{"name": "explode", "arguments": {"reason": "disk on fire"}}</tool_call>'
    missing = '<tool_call>{"name": "calculator", "arguments": {}}</tool_call>'
    env = ToolEnv("t", [], Rubric([]), [calculator, explode], max_turns=2)
    rollout, prompts = run_tool_env(tokenizer, env, [f"{bad}\n{unknown}", f"{boom}{missing}"], Example(0, ask()))
    assert rollout.error is None and len(rollout.turns) == 2 and len(prompts) == 2
    assert [m["content"] for m in rollout.completion if m["role"] == "tool"] == [
        "Error: ValueError: cannot parse `2 +`",
        "Error: unknown tool `search` (available: calculator, explode)",
    ]
    assert rollout.completion[-1]["role"] == "assistant" and len(rollout.completion[-1]["tool_calls"]) == 2

    env.max_turns = 3
    rollout, _ = run_tool_env(tokenizer, env, [boom + missing, "done"], Example(0, ask()))
    assert [m["content"] for m in rollout.completion if m["role"] == "tool"] == [
        "Error: RuntimeError: disk on fire",
        "Error: TypeError: missing a required argument: 'expression'",
    ]
    assert rollout.completion[-1] == {"role": "assistant", "content": "done"}


def test_calculator_tool_and_dataset():
    from prime_rl.environments import load_environment

    assert [calculator(e) for e in ("(3 + 4) * 12", "7 / 2", "-2 ** 3", "10 // 4")] == ["84", "3.5", "-8", "2"]
    for bad, message in [("__import__('os')", "unsupported expression element"), ("2 ** 100", "too large")]:
        with pytest.raises(ValueError, match=message):
            calculator(bad)
    env = load_environment("calculator")
    first = env.dataset()[0]
    assert first.answer == "-286" and "99 - 55 * 7" in first.prompt[0]["content"]
    assert len(env.dataset()) == 1000 and len(env.eval_dataset()) == 100

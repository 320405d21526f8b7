"""The inference server over HTTP with a tiny random model: routes, logprobs, seeds, concurrency, weight updates."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import torch

from prime_rl.inference.config import InferenceConfig
from prime_rl.inference.engines.base import SamplingParams
from prime_rl.inference.server import setup_app, setup_engine
from prime_rl.utils.net import free_port

MESSAGES = [{"role": "user", "content": "Reverse the word 'prime'."}]


@dataclass
class Server:
    url: str
    engine: object
    app: object
    output_dir: Path
    model_dir: Path

    def post(self, path: str, body: dict | None = None, **kwargs) -> httpx.Response:
        return httpx.post(f"{self.url}{path}", json=body, timeout=60, **kwargs)

    def chat(self, **body) -> dict:
        response = self.post("/v1/chat/completions", {"messages": MESSAGES, **body})
        assert response.status_code == 200, response.text
        return response.json()


@contextmanager
def run_server(model_dir: Path, output_dir: Path, **overrides) -> Iterator[Server]:
    """An in-process server on the tiny model (max_model_len 256, one thread); `overrides`: InferenceConfig fields."""
    import uvicorn

    port = free_port()
    config = InferenceConfig(
        model={"name": str(model_dir), "max_model_len": 256},
        server={"port": port, **overrides.pop("server", {})},
        output_dir=output_dir,
        num_threads=1,
        **overrides,
    )
    engine = setup_engine(config)
    app = setup_app(config, engine)
    uv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=uv.run, daemon=True)
    thread.start()
    while not uv.started:
        time.sleep(0.05)
    try:
        yield Server(f"http://127.0.0.1:{port}", engine, app, output_dir, model_dir)
    finally:
        uv.should_exit = True
        thread.join(timeout=10)
        engine.shutdown()


@pytest.fixture(scope="module")
def server(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    with run_server(tiny_model_dir, tmp_path_factory.mktemp("outputs")) as running:
        yield running


@pytest.fixture(scope="module")
def reference_model(tiny_model_dir: Path):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32, attn_implementation="sdpa").eval()


def forward_logprobs(model, prompt_ids: list[int], completion_ids: list[int], temperature: float) -> torch.Tensor:
    with torch.no_grad():
        logits = model(torch.tensor([prompt_ids + completion_ids])).logits[0, len(prompt_ids) - 1 : -1]
    lp = torch.log_softmax(logits.float() / (temperature or 1.0), dim=-1)
    return lp.gather(1, torch.tensor(completion_ids)[:, None])[:, 0]


# ---------------------------------------------------------------- routes


def test_health_and_models(server: Server):
    assert httpx.get(f"{server.url}/health").json() == {"status": "ok", "policy_step": 0}
    models = httpx.get(f"{server.url}/v1/models").json()
    assert models["object"] == "list"
    assert [m["id"] for m in models["data"]] == [str(server.model_dir)]
    assert models["data"][0]["max_model_len"] == 256


def test_chat_completion_body_token_ids_and_logprobs(server: Server, reference_model):
    tokenizer = server.engine.tokenizer
    body = server.chat(max_tokens=8, temperature=0.7, seed=3, logprobs=True, top_logprobs=3, return_token_ids=True)
    expected_prompt = tokenizer.apply_chat_template(
        MESSAGES, add_generation_prompt=True, tokenize=True, return_dict=False
    )
    assert body["object"] == "chat.completion" and body["model"] == str(server.model_dir)
    assert body["prompt_token_ids"] == list(expected_prompt)
    assert body["policy_step"] == 0
    (choice,) = body["choices"]
    ids = choice["token_ids"]
    assert choice["message"]["role"] == "assistant"
    assert choice["message"]["content"] == tokenizer.decode(ids, skip_special_tokens=True)
    assert body["usage"] == {
        "prompt_tokens": len(expected_prompt),
        "completion_tokens": len(ids),
        "total_tokens": len(expected_prompt) + len(ids),
    }
    assert (choice["finish_reason"], len(ids)) == ("length", 8)
    content = choice["logprobs"]["content"]
    assert [c["token"] for c in content] == [tokenizer.decode([i]) for i in ids]
    assert all(c["bytes"] == list(c["token"].encode()) for c in content)
    tops = [[t["logprob"] for t in c["top_logprobs"]] for c in content]
    assert all(
        len(t) == 3 and t == sorted(t, reverse=True) and t[0] >= c["logprob"]
        for t, c in zip(tops, content, strict=True)
    )
    expected = forward_logprobs(reference_model, body["prompt_token_ids"], ids, 0.7)
    assert torch.allclose(torch.tensor([c["logprob"] for c in content]), expected, atol=1e-4)


def test_greedy_logprobs_are_untempered_and_match_a_forward_pass(server: Server, reference_model):
    body = server.chat(max_tokens=6, temperature=0, logprobs=True, return_token_ids=True)
    ids = body["choices"][0]["token_ids"]
    got = torch.tensor([c["logprob"] for c in body["choices"][0]["logprobs"]["content"]])
    assert torch.allclose(got, forward_logprobs(reference_model, body["prompt_token_ids"], ids, 0.0), atol=1e-4)
    with torch.no_grad():
        logits = reference_model(torch.tensor([body["prompt_token_ids"] + ids])).logits[0]
    n_prompt = len(body["prompt_token_ids"])
    assert ids == logits[n_prompt - 1 : -1].argmax(-1).tolist()


def test_tokens_route_uses_the_ids_verbatim(server: Server):
    chat = server.chat(max_tokens=6, seed=11, return_token_ids=True)
    prompt = chat["prompt_token_ids"]
    tokens = server.post(
        "/v1/chat/completions/tokens", {"tokens": prompt, "max_tokens": 6, "seed": 11, "return_token_ids": True}
    )
    assert tokens.status_code == 200, tokens.text
    assert tokens.json()["prompt_token_ids"] == prompt
    assert tokens.json()["choices"][0]["token_ids"] == chat["choices"][0]["token_ids"]
    # No template: a prompt that is not a chat rendering is continued as is.
    raw = server.post("/v1/chat/completions/tokens", {"tokens": prompt[:3], "max_tokens": 2, "return_token_ids": True})
    assert raw.json()["prompt_token_ids"] == prompt[:3] and raw.json()["usage"]["prompt_tokens"] == 3


def test_n_choices_share_one_prefill_and_seed_reproduces(server: Server):
    before = dict(server.engine.stats)
    body = server.chat(n=4, max_tokens=5, seed=7, return_token_ids=True)
    after = server.engine.stats
    assert [c["index"] for c in body["choices"]] == [0, 1, 2, 3]
    assert len({tuple(c["token_ids"]) for c in body["choices"]}) > 1
    assert after["prefill_tokens"] - before["prefill_tokens"] == len(body["prompt_token_ids"])
    assert after["decode_steps"] - before["decode_steps"] == 4  # the first token comes from the prefill
    again = server.chat(n=4, max_tokens=5, seed=7, return_token_ids=True)
    assert [c["token_ids"] for c in again["choices"]] == [c["token_ids"] for c in body["choices"]]
    assert body["usage"]["completion_tokens"] == 20


def test_batched_request_keeps_its_tokens_and_its_logprobs_to_1e_5(server: Server):
    """A seeded request batched with a longer one (its prompt padded in the shared prefill) samples the same tokens as
    alone; its logprobs may differ in the last bit, which is why the reference loop's test runs one group at a time
    (docs/async.md)."""
    tokenizer = server.engine.tokenizer
    short, long = ([{"role": "user", "content": text}] for text in ("Hi.", "What is the largest planet we know of?"))
    short_ids, long_ids = (
        tokenizer.apply_chat_template(m, add_generation_prompt=True, return_dict=False) for m in (short, long)
    )
    params = SamplingParams(n=4, max_tokens=12, seed=5)

    async def alone_then_batched():
        alone = await server.engine.generate(short_ids, params)
        before = server.engine.stats["prefill_forwards"]
        batched = await asyncio.gather(
            server.engine.generate(short_ids, params), server.engine.generate(long_ids, params)
        )
        assert server.engine.stats["prefill_forwards"] == before + 1  # one shared prefill
        return alone, batched[0]

    alone, batched = asyncio.run(alone_then_batched())
    assert [c.token_ids_T for c in batched.choices] == [c.token_ids_T for c in alone.choices]
    for a, b in zip(alone.choices, batched.choices, strict=True):
        assert b.logprobs_T == pytest.approx(a.logprobs_T, abs=1e-5)


def test_min_tokens_and_max_tokens_bound_the_length(server: Server):
    body = server.chat(max_tokens=12, min_tokens=12, seed=1, return_token_ids=True)
    assert len(body["choices"][0]["token_ids"]) == 12 and body["choices"][0]["finish_reason"] == "length"
    negative_seed = server.chat(max_tokens=2, seed=-3, return_token_ids=True)
    assert len(negative_seed["choices"][0]["token_ids"]) == 2


def test_stop_string_truncates_text_and_keeps_the_completing_token(server: Server):
    tokenizer = server.engine.tokenizer
    full = server.chat(max_tokens=30, seed=21, return_token_ids=True)["choices"][0]
    text = full["message"]["content"]
    stop = text[len(text) // 2 : len(text) // 2 + 3]
    assert stop.strip()
    cut = server.chat(max_tokens=30, seed=21, stop=[stop, "@@never@@"], return_token_ids=True)["choices"][0]
    assert cut["finish_reason"] == "stop"
    assert cut["message"]["content"] == text[: text.index(stop)]
    ids = cut["token_ids"]
    assert ids == full["token_ids"][: len(ids)]
    assert stop in tokenizer.decode(ids, skip_special_tokens=True)
    assert stop not in tokenizer.decode(ids[:-1], skip_special_tokens=True)


def stream_chunks(server: Server, body: dict) -> list[dict]:
    chunks = []
    with httpx.stream("POST", f"{server.url}/v1/chat/completions", json={**body, "stream": True}, timeout=60) as r:
        for line in r.iter_lines():
            if line.startswith("data: ") and line != "data: [DONE]":
                chunks.append(json.loads(line[6:]))
    return chunks


def test_streaming_yields_the_same_tokens_and_text_as_a_plain_request(server: Server):
    for extra in ({}, {"stop": ["@@"]}):
        body = {"messages": MESSAGES, "max_tokens": 8, "seed": 5, "return_token_ids": True, **extra}
        plain = server.chat(**{k: v for k, v in body.items() if k != "messages"})
        chunks = stream_chunks(server, body)
        ids = [t for c in chunks for ch in c["choices"] for t in ch.get("token_ids", [])]
        text = "".join(ch["delta"].get("content", "") for c in chunks for ch in c["choices"])
        assert ids == plain["choices"][0]["token_ids"]
        assert text == plain["choices"][0]["message"]["content"]
        assert chunks[-1]["usage"]["completion_tokens"] == 8 and chunks[-1]["policy_step"] == 0
    # A stop string completed in the middle: the stream never shows text past it.
    full = server.chat(max_tokens=30, seed=21)["choices"][0]["message"]["content"]
    stop = full[len(full) // 2 : len(full) // 2 + 3]
    chunks = stream_chunks(server, {"messages": MESSAGES, "max_tokens": 30, "seed": 21, "stop": [stop]})
    text = "".join(ch["delta"].get("content", "") for c in chunks for ch in c["choices"])
    assert text == full[: full.index(stop)]
    assert [ch["finish_reason"] for c in chunks for ch in c["choices"]][-1] == "stop"


def test_32_concurrent_requests_equal_their_solo_results(server: Server):
    def request(i: int) -> dict:
        messages = [{"role": "user", "content": f"Count to {i} please" + "!" * (i % 7)}]
        body = {"messages": messages, "max_tokens": 4 + i % 9, "seed": 100 + i, "return_token_ids": True}
        body.update({"logprobs": True, "temperature": [0.0, 0.8, 1.0][i % 3], "n": 1 + i % 2})
        response = server.post("/v1/chat/completions", body)
        assert response.status_code == 200, response.text
        return response.json()

    def ids(body: dict) -> list[list[int]]:
        return [c["token_ids"] for c in body["choices"]]

    def logprobs(body: dict) -> torch.Tensor:
        return torch.tensor([x["logprob"] for c in body["choices"] for x in c["logprobs"]["content"]])

    solo = [request(i) for i in range(32)]
    forwards = server.engine.stats["prefill_forwards"]
    with ThreadPoolExecutor(32) as pool:
        together = list(pool.map(request, range(32)))
    assert [ids(b) for b in together] == [ids(b) for b in solo]
    assert all(torch.allclose(logprobs(a), logprobs(b), atol=1e-4) for a, b in zip(together, solo, strict=True))
    assert server.engine.stats["prefill_forwards"] - forwards < 32  # arrivals were batched


def test_a_late_request_joins_the_running_batch(server: Server):
    body = {"messages": MESSAGES, "max_tokens": 180, "min_tokens": 180, "seed": 6, "return_token_ids": True}
    with ThreadPoolExecutor(1) as pool:
        long = pool.submit(server.post, "/v1/chat/completions", body)
        while not server.engine.scheduler.active:
            time.sleep(0.005)
        short = server.chat(max_tokens=2, seed=1)
        assert not long.done()  # the short request was served while the long one was decoding
        result = long.result().json()
    assert short["usage"]["completion_tokens"] == 2
    solo = server.chat(**{k: v for k, v in body.items() if k != "messages"})
    assert result["choices"][0]["token_ids"] == solo["choices"][0]["token_ids"]


# ---------------------------------------------------------------- weights


def save_weights(server: Server, name: str, state: dict[str, torch.Tensor]) -> Path:
    from safetensors.torch import save_file

    target = server.output_dir / "broadcasts" / name
    target.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in state.items()}, target / "model.safetensors")
    return target


def eos_loving_state(model_dir: Path) -> dict[str, torch.Tensor]:
    """Weights of the tiny model edited so that EOS is almost certain: hidden dim 0 carries a constant 1 through every
    layer, the final norm keeps only dim 0, and only EOS has a large embedding on dim 0 (tied lm_head)."""
    from safetensors.torch import load_file
    from transformers import AutoConfig

    state = load_file(model_dir / "model.safetensors")
    eos = AutoConfig.from_pretrained(model_dir).eos_token_id
    state.pop("lm_head.weight", None)
    state["model.embed_tokens.weight"][:, 0] = 1.0
    state["model.embed_tokens.weight"][eos, 0] = 60.0
    state["model.norm.weight"] = torch.zeros_like(state["model.norm.weight"])
    state["model.norm.weight"][0] = 1.0
    for name in state:
        if name.endswith(("o_proj.weight", "down_proj.weight")):
            state[name][0, :] = 0.0
    return state


def test_weight_update_changes_outputs_and_policy_step_and_reload_restores(server: Server):
    eos = server.engine.stop_ids[0]
    base = server.chat(max_tokens=6, seed=2, return_token_ids=True, logprobs=True)
    weight_dir = save_weights(server, "step_3", eos_loving_state(server.model_dir))
    response = server.post("/update_weights", {"weight_dir": str(weight_dir)})
    assert response.status_code == 200, response.text
    assert response.json()["policy_step"] == 3
    assert httpx.get(f"{server.url}/health").json()["policy_step"] == 3
    updated = server.chat(max_tokens=6, seed=2, return_token_ids=True, logprobs=True)
    (choice,) = updated["choices"]
    assert updated["policy_step"] == 3
    assert choice["token_ids"] == [eos] and choice["finish_reason"] == "stop" and choice["message"]["content"] == ""
    assert choice["logprobs"]["content"][0]["logprob"] > -1e-3
    banned = server.chat(max_tokens=10, min_tokens=3, seed=2, return_token_ids=True)["choices"][0]
    assert len(banned["token_ids"]) == 4 and banned["token_ids"][-1] == eos and eos not in banned["token_ids"][:3]
    named = server.post("/update_weights", {"weight_dir": str(weight_dir), "step": 9})
    assert named.json()["policy_step"] == 9
    reload = server.post("/reload_weights")
    assert reload.status_code == 200 and reload.json()["policy_step"] == 0
    restored = server.chat(max_tokens=6, seed=2, return_token_ids=True, logprobs=True)
    assert restored["choices"] == base["choices"] and restored["policy_step"] == 0


def test_requests_in_flight_restart_on_new_weights_never_mixing(server: Server):
    eos = server.engine.stop_ids[0]
    weight_dir = save_weights(server, "step_5", eos_loving_state(server.model_dir))
    body = {"messages": MESSAGES, "max_tokens": 200, "min_tokens": 200, "seed": 4, "return_token_ids": True}
    with ThreadPoolExecutor(1) as pool:
        future = pool.submit(server.post, "/v1/chat/completions", body)
        while server.engine.stats["decode_steps"] == 0 or not server.engine.scheduler.active:
            time.sleep(0.01)
        assert server.post("/update_weights", {"weight_dir": str(weight_dir)}).status_code == 200
        result = future.result().json()
    solo = server.chat(**{k: v for k, v in body.items() if k != "messages"})
    assert result["policy_step"] == 5 and solo["policy_step"] == 5
    assert result["choices"][0]["token_ids"] == solo["choices"][0]["token_ids"]
    assert eos not in result["choices"][0]["token_ids"][:199]
    server.post("/reload_weights")


def test_update_weights_refusals(server: Server, tmp_path: Path):
    outside = server.post("/update_weights", {"weight_dir": str(tmp_path)})
    assert outside.status_code == 403 and outside.json()["error"]["param"] == "weight_dir"
    assert "outside the output directory" in outside.json()["error"]["message"]
    sneaky = server.post("/update_weights", {"weight_dir": str(server.output_dir / ".." / tmp_path.name)})
    assert sneaky.status_code == 403
    missing = server.post("/update_weights", {"weight_dir": str(server.output_dir / "broadcasts" / "step_77")})
    assert missing.status_code == 404 and "does not exist" in missing.json()["error"]["message"]
    empty = server.output_dir / "broadcasts" / "step_78"
    empty.mkdir(parents=True)
    assert server.post("/update_weights", {"weight_dir": str(empty)}).status_code == 404
    wrong = save_weights(server, "step_79", {"not.a.param": torch.zeros(2)})
    response = server.post("/update_weights", {"weight_dir": str(wrong)})
    assert response.status_code == 400 and "`not.a.param`" in response.json()["error"]["message"]
    no_step = save_weights(server, "latest", eos_loving_state(server.model_dir))
    response = server.post("/update_weights", {"weight_dir": str(no_step)})
    assert response.status_code == 400 and response.json()["error"]["param"] == "step"
    assert httpx.get(f"{server.url}/health").json()["policy_step"] == 0


# ---------------------------------------------------------------- errors, auth, clients


@pytest.mark.parametrize(
    ("body", "param", "fragment"),
    [
        ({"messages": MESSAGES, "model": "gpt-4"}, "model", "`gpt-4` is not served"),
        ({"messages": MESSAGES, "max_tokens": -1}, "max_tokens", "greater than or equal to 1"),
        ({"messages": MESSAGES, "frequency_penalty": 1, "foo": 2}, "foo", "unknown fields `foo`, `frequency_penalty`"),
        ({"messages": MESSAGES, "top_logprobs": 2}, "top_logprobs", "requires `logprobs: true`"),
        ({"messages": [{"role": "user", "content": "x" * 2000}]}, "messages", "context is 256 tokens"),
        ({"max_tokens": 3}, "messages", "non-empty list"),
        ({"messages": MESSAGES, "temperature": -0.5}, "temperature", "greater than or equal to 0"),
    ],
)
def test_bad_requests_get_openai_errors_naming_the_field(server: Server, body: dict, param: str, fragment: str):
    response = server.post("/v1/chat/completions", body)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["param"] == param and fragment in error["message"]
    assert error["type"] == "invalid_request_error" and error["code"] == 400


def test_malformed_json_and_token_route_errors(server: Server):
    response = httpx.post(f"{server.url}/v1/chat/completions", content=b"{not json", timeout=10)
    assert response.status_code == 400 and "malformed JSON" in response.json()["error"]["message"]
    too_long = server.post("/v1/chat/completions/tokens", {"tokens": [5] * 300})
    assert too_long.status_code == 400 and too_long.json()["error"]["param"] == "tokens"
    missing = server.post("/v1/chat/completions/tokens", {"messages": MESSAGES})
    assert missing.status_code == 400 and missing.json()["error"]["param"] == "tokens"
    assert httpx.get(f"{server.url}/nope").status_code == 404
    assert httpx.get(f"{server.url}/health").status_code == 200


def test_api_key_is_required_except_for_health(server: Server):
    from fastapi.testclient import TestClient

    from prime_rl.inference.app import create_app

    app = create_app(server.engine, server.engine.tokenizer, "tiny", set(), server.output_dir, api_key="sekret")
    with TestClient(app) as client:
        assert client.get("/health").status_code == 200
        denied = client.get("/v1/models")
        assert denied.status_code == 401 and denied.json()["error"]["type"] == "authentication_error"
        assert client.get("/v1/models", headers={"Authorization": "Bearer wrong"}).status_code == 401
        ok = client.post(
            "/v1/chat/completions",
            json={"messages": MESSAGES, "max_tokens": 2, "model": "tiny"},
            headers={"Authorization": "Bearer sekret"},
        )
        assert ok.status_code == 200 and ok.json()["model"] == "tiny"


def test_official_openai_client(server: Server):
    from openai import OpenAI

    client = OpenAI(base_url=f"{server.url}/v1", api_key="unused")
    (model,) = client.models.list().data
    completion = client.chat.completions.create(
        model=model.id,
        messages=MESSAGES,
        max_tokens=5,
        temperature=0.9,
        seed=8,
        logprobs=True,
        top_logprobs=2,
        stop=["@@"],
        extra_body={"return_token_ids": True, "top_k": 50, "min_p": 0.01},
    )
    choice = completion.choices[0]
    assert completion.usage.completion_tokens == len(choice.model_extra["token_ids"]) == 5
    assert len(choice.logprobs.content) == 5 and len(choice.logprobs.content[0].top_logprobs) == 2
    assert completion.model_extra["policy_step"] == 0
    rendered = server.engine.tokenizer.apply_chat_template(MESSAGES, add_generation_prompt=True, return_dict=False)
    assert completion.model_extra["prompt_token_ids"] == list(rendered)
    stream = client.chat.completions.create(
        model=model.id, messages=MESSAGES, max_tokens=5, seed=8, temperature=0.9, stream=True
    )
    streamed = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    plain = client.chat.completions.create(model=model.id, messages=MESSAGES, max_tokens=5, seed=8, temperature=0.9)
    assert streamed == plain.choices[0].message.content


def test_cli_help_and_config_errors_answer_before_loading_anything():
    exe = Path(sys.executable).with_name("inference")
    helped = subprocess.run([str(exe), "--help"], capture_output=True, text=True, timeout=60)
    assert helped.returncode == 0 and "--server.port" in helped.stdout and "--output-dir" in helped.stdout
    bad = subprocess.run([str(exe), "--server.prot", "1"], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "unknown key `server.prot`" in bad.stderr


@pytest.mark.skipif(not hasattr(os, "sched_getaffinity"), reason="Linux affinity")
def test_pinned_engine_thread_runs_on_its_own_core(tiny_model_dir: Path, tmp_path: Path):
    mask = os.sched_getaffinity(0)
    with run_server(tiny_model_dir, tmp_path, pin_threads=True) as pinned:
        assert pinned.chat(max_tokens=4, temperature=0.0)["usage"]["completion_tokens"] == 4
        engine_mask = os.sched_getaffinity(pinned.engine._thread.native_id)
    assert engine_mask == ({max(mask)} if len(mask) > 1 else mask)
    assert os.sched_getaffinity(0) == mask  # the front end (and this test's thread) keep every core

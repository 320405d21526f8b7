"""The scoring route `POST /v1/logprobs` on the HF engine: teacher-forced logprobs equal a plain forward pass, match
the sampled logprobs at the same temperature, and bad requests are refused naming the field."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from fastapi.testclient import TestClient

from prime_rl.inference.app import create_app
from prime_rl.inference.config import InferenceConfig
from prime_rl.inference.server import setup_engine

MESSAGES = [{"role": "user", "content": "Reverse the word 'prime'."}]
TOLERANCE = 1e-5
"""Max |route - reference| in float32: the engine's grouped SDPA and transformers' sdpa sum in different orders."""


@pytest.fixture(scope="module")
def engine(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    config = InferenceConfig(
        model={"name": str(tiny_model_dir), "max_model_len": 256},
        output_dir=tmp_path_factory.mktemp("outputs"),
        num_threads=1,
    )
    engine = setup_engine(config)
    yield engine
    engine.shutdown()


@pytest.fixture(scope="module")
def client(engine):
    app = create_app(engine, engine.tokenizer, "tiny", set(), Path("."), api_key="sekret")
    with TestClient(app, headers={"Authorization": "Bearer sekret"}) as client:
        yield client


@pytest.fixture(scope="module")
def reference_model(tiny_model_dir: Path):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32, attn_implementation="sdpa").eval()


def forward_logprobs(model, tokens: list[int], start: int, temperature: float) -> torch.Tensor:
    with torch.no_grad():
        logits = model(torch.tensor([tokens])).logits[0, start - 1 : -1]
    lp = torch.log_softmax(logits.float() / temperature, dim=-1)
    return lp.gather(1, torch.tensor(tokens[start:])[:, None])[:, 0]


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_logprobs_equal_a_teacher_forced_forward_pass(client, engine, reference_model, temperature: float):
    prompt = engine.tokenizer.apply_chat_template(
        MESSAGES, add_generation_prompt=True, tokenize=True, return_dict=False
    )
    tokens = [*prompt, *engine.tokenizer.encode("emirp, said the model")]
    body = {"model": "tiny", "tokens": tokens, "start": len(prompt), "temperature": temperature}
    response = client.post("/v1/logprobs", json=body)
    assert response.status_code == 200, response.text
    data = response.json()
    assert (data["object"], data["model"], data["start"], data["policy_step"]) == ("logprobs", "tiny", len(prompt), 0)
    assert data["usage"]["prompt_tokens"] == len(tokens)
    expected = forward_logprobs(reference_model, tokens, len(prompt), temperature)
    got = torch.tensor(data["logprobs"])
    assert got.shape == expected.shape == (len(tokens) - len(prompt),)
    assert (got - expected).abs().max().item() <= TOLERANCE
    whole = client.post("/v1/logprobs", json={"tokens": tokens, "temperature": temperature}).json()["logprobs"]
    assert len(whole) == len(tokens) - 1
    assert torch.allclose(torch.tensor(whole[len(prompt) - 1 :]), got, atol=TOLERANCE, rtol=0)


def test_logprobs_match_what_sampling_reported_at_that_temperature(client):
    body = {"messages": MESSAGES, "max_tokens": 12, "temperature": 0.8, "seed": 5, "logprobs": True}
    sampled = client.post("/v1/chat/completions", json={**body, "return_token_ids": True}).json()
    prompt, (choice,) = sampled["prompt_token_ids"], sampled["choices"]
    sampled_lp = [entry["logprob"] for entry in choice["logprobs"]["content"]]
    scored = client.post(
        "/v1/logprobs", json={"tokens": prompt + choice["token_ids"], "start": len(prompt), "temperature": 0.8}
    ).json()["logprobs"]
    assert max(abs(a - b) for a, b in zip(scored, sampled_lp, strict=True)) <= TOLERANCE


@pytest.mark.parametrize(
    ("body", "param", "fragment"),
    [
        ({"tokens": [1, 2, 3], "start": 3}, "start", "must be in [1, 3)"),
        ({"tokens": [1, 2, 3], "start": 0}, "start", "greater than or equal to 1"),
        ({"tokens": [1]}, "tokens", "at least 2 items"),
        ({"tokens": [1, 10**9]}, "tokens", "token ids must be in [0,"),
        ({"tokens": [5] * 300}, "tokens", "300 tokens exceed the model's context of 256 tokens"),
        ({"tokens": [1, 2], "temperature": 0.0}, "temperature", "greater than or equal to 0.001"),
        ({"tokens": [1, 2], "n": 2}, "n", "unknown field `n`"),
        ({"tokens": [1, 2], "model": "other"}, "model", "model `other` is not served here"),
    ],
)
def test_bad_scoring_requests_name_the_field(client, body: dict, param: str, fragment: str):
    response = client.post("/v1/logprobs", json=body)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["param"] == param and fragment in error["message"], error


def test_scoring_requires_the_api_key(client):
    denied = client.post("/v1/logprobs", json={"tokens": [1, 2]}, headers={"Authorization": "Bearer wrong"})
    assert denied.status_code == 401

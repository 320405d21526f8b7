"""The vLLM engine (`engine = "vllm"`, vLLM's CPU build here) behind the HF engine's HTTP contract, on
SmolLM2-135M-Instruct in float32: the official client, logprobs against the trainer's forward pass, weight updates
against the HF engine, and the token-in route. One server for the module, eager (vLLM's compile warm-up takes
minutes on CPU; `test_vllm_rl.py` runs the default, compiled configuration)."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import torch

from prime_rl.utils.net import free_port

pytestmark = pytest.mark.vllm

API_KEY = "vllm-test-key"
MODEL = "smollm2-135m-instruct"
PROMPTS = [
    "What is the capital of France? Answer in one word.",
    "Name a color of the sky.",
    "Which animal says moo?",
]
START_TIMEOUT_S = 1500


@dataclass
class Server:
    url: str
    output_dir: Path

    def post(self, path: str, body: dict | None = None) -> httpx.Response:
        headers = {"Authorization": f"Bearer {API_KEY}"}
        return httpx.post(f"{self.url}{path}", json=body, headers=headers, timeout=600)

    def chat(self, path: str = "/v1/chat/completions", **body) -> dict:
        response = self.post(path, body)
        assert response.status_code == 200, response.text
        return response.json()


def messages(prompt: str) -> list[dict]:
    return [{"role": "user", "content": prompt}]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    with vllm_server(tmp_path_factory.mktemp("vllm_outputs")) as started:
        yield started


@contextmanager
def vllm_server(output_dir: Path, **vllm: Any) -> Iterator[Server]:
    """An eager vLLM-engine server on SmolLM2 (float32), healthy, stopped on exit; `vllm`: more `[vllm]` options."""
    pytest.importorskip("vllm", reason="vLLM is not installed (`make test-vllm` installs its CPU build)")
    from prime_rl.eval.server import started_server
    from prime_rl.inference.config import InferenceConfig

    config = InferenceConfig(
        engine="vllm",
        model={"name": MODEL, "max_model_len": 2048},
        server={"port": free_port(), "api_key": API_KEY},
        output_dir=output_dir,
        num_threads=2,
        vllm={"enforce_eager": True, **vllm},
    )
    with pytest.MonkeyPatch.context() as env:
        env.setenv("VLLM_CPU_KVCACHE_SPACE", os.environ.get("VLLM_CPU_KVCACHE_SPACE", "2"))
        paths = (output_dir / "inference.toml", output_dir / "inference.log")
        with started_server(config, *paths, START_TIMEOUT_S) as base_url:
            yield Server(base_url.removesuffix("/v1"), output_dir)


@pytest.fixture(scope="module")
def model_dir() -> Path:
    from prime_rl.utils.models import resolve_model_path

    return Path(resolve_model_path(MODEL))


@pytest.fixture(scope="module")
def tokenizer(model_dir: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(model_dir)


def test_health_api_key_and_the_official_openai_client(server: Server):
    from openai import OpenAI

    assert httpx.get(f"{server.url}/health").json() == {"status": "ok", "policy_step": 0}
    refused = httpx.get(f"{server.url}/v1/models")
    assert refused.status_code == 401 and refused.json()["error"]["type"] == "authentication_error"
    client = OpenAI(base_url=f"{server.url}/v1", api_key=API_KEY)
    assert [m.id for m in client.models.list().data] == [MODEL]
    completion = client.chat.completions.create(
        model=MODEL,
        messages=messages(PROMPTS[0]),
        max_tokens=8,
        temperature=0,
        logprobs=True,
        extra_body={"return_token_ids": True},
    )
    choice = completion.choices[0]
    extra = completion.model_extra
    assert extra["policy_step"] == 0 and len(extra["prompt_token_ids"]) == completion.usage.prompt_tokens
    token_ids = choice.model_extra["token_ids"]
    assert len(token_ids) == len(choice.logprobs.content) == completion.usage.completion_tokens
    assert choice.finish_reason in ("stop", "length") and choice.message.content


def trainer_logprobs(
    samples: list[tuple[list[int], list[int]]], temperature: float, model: torch.nn.Module | None = None
) -> list[torch.Tensor]:
    """Teacher-forced logprobs of each completion under the trainer's model (default: the served base model) and
    logprob code (packed, varlen)."""
    from prime_rl.trainer.config import TrainerModelConfig
    from prime_rl.trainer.logprobs import packed_logprobs
    from prime_rl.trainer.model import setup_model

    if model is None:
        model = setup_model(TrainerModelConfig(name=MODEL, dtype="float32", device="cpu")).eval()
    ids = [p + c for p, c in samples]
    input_ids = torch.tensor([t for row in ids for t in row])
    positions = torch.cat([torch.arange(len(row)) for row in ids])
    with torch.no_grad():
        lp, _ = packed_logprobs(
            model,
            input_ids,
            positions,
            torch.full_like(input_ids, temperature, dtype=torch.float32),
            [len(r) for r in ids],
        )
    out, start = [], 0
    for prompt, completion in samples:
        out.append(lp[start + len(prompt) : start + len(prompt) + len(completion)])
        start += len(prompt) + len(completion)
    return out


def test_sampled_logprobs_equal_the_trainers_forward_pass(server: Server):
    """A step-0 batch like the one-word example's (prompts x 8 samples, temperature 1, 24 tokens)."""
    samples, served = [], []
    for i, prompt in enumerate(PROMPTS):
        body = server.chat(messages=messages(prompt), n=8, max_tokens=24, temperature=1.0, seed=i, logprobs=True,
                           return_token_ids=True)  # fmt: skip
        for choice in body["choices"]:
            samples.append((body["prompt_token_ids"], choice["token_ids"]))
            served.append(torch.tensor([c["logprob"] for c in choice["logprobs"]["content"]]))
    expected = trainer_logprobs(samples, 1.0)
    diff = torch.cat([s - e for s, e in zip(served, expected, strict=True)])
    r = -diff  # trainer minus inference
    mismatch_kl = float((torch.exp(r) - r - 1).mean())
    print(f"vLLM vs trainer logprobs: {diff.numel()} tokens, max abs diff {diff.abs().max():.2e}, "
          f"mismatch KL {mismatch_kl:.2e}")  # fmt: skip
    assert mismatch_kl < 1e-3
    assert diff.abs().max() < 0.05


def test_tempered_logprobs_are_of_the_temperature_scaled_distribution(server: Server):
    body = server.chat(messages=messages(PROMPTS[1]), max_tokens=12, temperature=0.6, seed=5, logprobs=True,
                       return_token_ids=True)  # fmt: skip
    (choice,) = body["choices"]
    served = torch.tensor([c["logprob"] for c in choice["logprobs"]["content"]])
    (expected,) = trainer_logprobs([(body["prompt_token_ids"], choice["token_ids"])], 0.6)
    (untempered,) = trainer_logprobs([(body["prompt_token_ids"], choice["token_ids"])], 1.0)
    assert (served - expected).abs().max() < 0.02
    assert (served - untempered).abs().max() > 0.05


def greedy(server: Server, prompts: list[str]) -> tuple[list[list[int]], int]:
    body = {"max_tokens": 16, "min_tokens": 16, "temperature": 0, "return_token_ids": True}
    bodies = [server.chat(messages=messages(p), **body) for p in prompts]
    steps = {b["policy_step"] for b in bodies}
    assert len(steps) == 1, steps
    return [b["choices"][0]["token_ids"] for b in bodies], steps.pop()


def hf_greedy(model_dir: Path, weight_dir: Path, step: int, tokenizer) -> list[list[int]]:
    """The HF engine's greedy completions of PROMPTS after loading `weight_dir`."""
    from prime_rl.inference.engines.base import SamplingParams
    from prime_rl.inference.engines.hf import setup_hf_engine

    engine = setup_hf_engine(str(model_dir), dtype="float32", device="cpu", max_batch_size=4, num_threads=1)
    engine.start()
    try:

        async def run() -> list[list[int]]:
            await engine.update_weights(weight_dir, step)
            out = []
            for prompt in PROMPTS:
                ids = tokenizer.apply_chat_template(messages(prompt), add_generation_prompt=True, return_dict=False)
                result = await engine.generate(list(ids), SamplingParams(temperature=0, max_tokens=16, min_tokens=16))
                out.append(result.choices[0].token_ids_T)
            return out

        return asyncio.run(run())
    finally:
        engine.shutdown()


def perturbed_weights(model_dir: Path, target: Path) -> Path:
    """Every parameter of the served model plus 2% of its own std of seeded noise, saved like a trainer broadcast."""
    from safetensors.torch import load_file, save_file

    target.mkdir(parents=True)
    generator = torch.Generator().manual_seed(0)
    state = {}
    for file in sorted(model_dir.glob("*.safetensors")):
        for name, tensor in load_file(file).items():
            noise = torch.randn(tensor.shape, generator=generator, dtype=torch.float32)
            state[name] = (tensor.float() + 0.02 * tensor.float().std() * noise).contiguous()
    save_file(state, target / "model.safetensors")
    return target


def test_update_weights_matches_the_hf_engine_and_reload_restores(server: Server, model_dir: Path, tokenizer):
    base, step = greedy(server, PROMPTS)
    assert step == 0
    weight_dir = perturbed_weights(model_dir, server.output_dir / "broadcasts" / "step_1")
    response = server.post("/update_weights", {"weight_dir": str(weight_dir)})
    assert response.status_code == 200, response.text
    assert response.json()["policy_step"] == 1
    updated, step = greedy(server, PROMPTS)
    assert step == 1
    assert updated != base
    assert updated == hf_greedy(model_dir, weight_dir, 1, tokenizer)
    assert server.post("/reload_weights").json() == {"status": "ok", "policy_step": 0}
    assert greedy(server, PROMPTS) == (base, 0)


def test_requests_in_flight_at_an_update_restart_on_the_new_weights(server: Server, model_dir: Path):
    """Every token of a completion in flight at an update comes from the new weights: its logprobs equal a forward
    pass of the new weights (the old ones would be off by far more than float noise). `min_tokens` keeps every
    request running past the update; vLLM reports logprobs with the stop tokens masked until then (docs)."""
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from prime_rl.inference.engines.vllm import stop_token_ids

    weight_dir = perturbed_weights(model_dir, server.output_dir / "broadcasts" / "step_2")
    body = {"max_tokens": 96, "min_tokens": 96, "temperature": 0, "logprobs": True, "return_token_ids": True}
    with ThreadPoolExecutor(len(PROMPTS)) as pool:
        futures = [pool.submit(server.chat, messages=messages(p), **body) for p in PROMPTS]
        time.sleep(1.0)  # 96 tokens each take several seconds on CPU: the update lands mid-generation
        assert not any(f.done() for f in futures)
        assert server.post("/update_weights", {"weight_dir": str(weight_dir)}).status_code == 200
        in_flight = [f.result() for f in futures]
    assert [r["policy_step"] for r in in_flight] == [2] * len(PROMPTS)
    assert server.post("/reload_weights").json()["policy_step"] == 0
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    model.load_state_dict(load_file(weight_dir / "model.safetensors"), strict=False)
    stop_ids = stop_token_ids(str(model_dir), AutoTokenizer.from_pretrained(model_dir))
    for response in in_flight:
        prompt, (choice,) = response["prompt_token_ids"], response["choices"]
        with torch.no_grad():
            logits = model(torch.tensor([prompt + choice["token_ids"]])).logits[0, len(prompt) - 1 : -1]
        logits[:, stop_ids] = float("-inf")
        expected = torch.log_softmax(logits, -1).gather(1, torch.tensor(choice["token_ids"])[:, None])[:, 0]
        served = torch.tensor([c["logprob"] for c in choice["logprobs"]["content"]])
        assert (served - expected).abs().max() < 1e-3


def test_update_weights_refusals(server: Server, tmp_path: Path):
    outside = server.post("/update_weights", {"weight_dir": str(tmp_path)})
    assert outside.status_code == 403 and outside.json()["error"]["param"] == "weight_dir"
    assert "outside the output directory" in outside.json()["error"]["message"]
    missing = server.post("/update_weights", {"weight_dir": str(server.output_dir / "broadcasts" / "step_77")})
    assert missing.status_code == 404
    wrong = server.output_dir / "broadcasts" / "step_78"
    wrong.mkdir(parents=True)
    from safetensors.torch import save_file

    save_file({"model.embed_tokens.weight": torch.zeros(3, 3)}, wrong / "model.safetensors")
    response = server.post("/update_weights", {"weight_dir": str(wrong)})
    assert response.status_code == 400
    assert "has shape (3, 3), the served model expects (49152, 576)" in response.json()["error"]["message"]
    assert httpx.get(f"{server.url}/health").json()["policy_step"] == 0


def test_token_route_equals_the_messages_route(server: Server, tokenizer):
    for prompt in PROMPTS[:2]:
        ids = tokenizer.apply_chat_template(messages(prompt), add_generation_prompt=True, return_dict=False)
        by_messages = server.chat(messages=messages(prompt), max_tokens=12, temperature=0.8, seed=7, logprobs=True,
                                  return_token_ids=True)  # fmt: skip
        by_tokens = server.chat("/v1/chat/completions/tokens", tokens=list(ids), max_tokens=12, temperature=0.8,
                                seed=7, logprobs=True, return_token_ids=True)  # fmt: skip
        assert by_messages["prompt_token_ids"] == by_tokens["prompt_token_ids"] == list(ids)
        assert by_messages["choices"][0]["token_ids"] == by_tokens["choices"][0]["token_ids"]
        assert by_messages["choices"][0]["message"] == by_tokens["choices"][0]["message"]


def test_streaming_gives_the_tokens_of_a_plain_request(server: Server):
    body = {"messages": messages(PROMPTS[2]), "max_tokens": 10, "temperature": 0.9, "seed": 3,
            "return_token_ids": True}  # fmt: skip
    plain = server.chat(**body)
    streamed: list[int] = []
    headers = {"Authorization": f"Bearer {API_KEY}"}
    with httpx.stream("POST", f"{server.url}/v1/chat/completions", json={**body, "stream": True}, headers=headers,
                      timeout=600) as response:  # fmt: skip
        for line in response.iter_lines():
            if line.startswith("data: {"):
                chunk = httpx.Response(200, content=line[6:]).json()
                for choice in chunk["choices"]:
                    streamed += choice.get("token_ids", [])
    assert streamed == plain["choices"][0]["token_ids"]


def test_scoring_route_equals_the_sampled_logprobs_at_temperature_1(server: Server):
    body = server.chat(messages=messages(PROMPTS[0]), max_tokens=12, temperature=1.0, seed=7, logprobs=True,
                       return_token_ids=True)  # fmt: skip
    prompt, (choice,) = body["prompt_token_ids"], body["choices"]
    sampled = [entry["logprob"] for entry in choice["logprobs"]["content"]]
    tokens = prompt + choice["token_ids"]
    scored = server.post("/v1/logprobs", {"tokens": tokens, "start": len(prompt)})
    assert scored.status_code == 200, scored.text
    assert max(abs(a - b) for a, b in zip(scored.json()["logprobs"], sampled, strict=True)) <= 1e-4
    refused = server.post("/v1/logprobs", {"tokens": tokens, "start": len(prompt), "temperature": 0.7})
    assert refused.status_code == 400 and refused.json()["error"]["param"] == "temperature"


def test_concurrent_seeded_prompts_over_the_token_budget_are_served(server: Server):
    """8 seeded prompts of ~400 tokens at once exceed vLLM's 2048-token step budget: chunked prefill would split one,
    and rewinding its CPU generator killed vLLM's engine core (found by `rl` on the one-word example's evaluation)."""
    long_prompt = " ".join(["Count the words of this sentence, then answer."] * 45)
    with ThreadPoolExecutor(8) as pool:
        bodies = list(pool.map(lambda i: server.chat(messages=messages(f"{i}. {long_prompt}"), max_tokens=4, seed=i,
                                                     temperature=1.0), range(8)))  # fmt: skip
    assert all(b["usage"]["prompt_tokens"] > 400 for b in bodies)
    assert sum(b["usage"]["prompt_tokens"] for b in bodies) > 2048
    assert httpx.get(f"{server.url}/health").status_code == 200


def server_process(output_dir: Path):
    """The `psutil.Process` of the server started on `output_dir` by this test process."""
    import psutil

    config = str(output_dir / "inference.toml")
    (proc,) = [p for p in psutil.Process().children() if any(config in arg for arg in p.cmdline())]
    return proc


def test_a_killed_worker_stops_the_server_with_the_reason(server: Server):
    """Last user of the module's server (it ends it): vLLM's worker killed as by the out-of-memory killer."""
    proc = server_process(server.output_dir)
    workers = [p for p in proc.children(recursive=True) if p.name() == "VLLM::Worker"]
    assert len(workers) == 1, [p.name() for p in proc.children(recursive=True)]
    workers[0].kill()
    assert proc.wait(timeout=120) == 1
    log = (server.output_dir / "inference.log").read_text()
    assert "inference server stopped: vLLM's engine core died" in log


def test_sigkill_of_the_server_leaves_none_of_vllms_processes(tmp_path: Path):
    """The server killed as by the out-of-memory killer takes vLLM's engine core and worker with it within 10 s (they
    ran on, parent pid 1, 3.9 GB). Its own server, started after the module's has ended."""
    import psutil

    from prime_rl.utils.lifecycle import alive_after, descendants

    with vllm_server(tmp_path):
        proc = server_process(tmp_path)
        tree = descendants(proc.pid)
        names = [psutil.Process(pid).name() for pid in tree]
        assert {"VLLM::EngineCore", "VLLM::Worker"} <= set(names), names
        proc.kill()
        assert proc.wait(timeout=30) == -9
        assert alive_after(tree, 10.0) == [], names

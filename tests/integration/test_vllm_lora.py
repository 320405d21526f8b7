"""LoRA on the vLLM engine (vLLM's CPU build, SmolLM2-135M-Instruct in float32, eager): the trainer's adapter
broadcasts served through vLLM's LoRA support, against the trainer's forward pass with the adapter; requests in flight
at an adapter update; `/reload_weights`; refusals. One server for the module (`vllm.max_lora_rank = 8`)."""

from __future__ import annotations

import re
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
import torch
from test_vllm import PROMPTS, Server, greedy, messages, trainer_logprobs, vllm_server

# Every test may load an adapter: the base model's greedy answers are taken first, whichever test runs first.
pytestmark = [pytest.mark.vllm, pytest.mark.usefixtures("base_greedy")]
MODEL = "smollm2-135m-instruct"
RANK = 8


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    with vllm_server(tmp_path_factory.mktemp("vllm_lora_outputs"), max_lora_rank=RANK) as started:
        yield started


def adapted_model(seed: int, rank: int = RANK, targets: list[str] | str = "all-linear", attn: str = "varlen"):
    """The trainer's SmolLM2 with LoRA adapters whose B holds seeded noise (std 0.05: greedy answers change, and stay
    sentences), as a few RL steps would leave it; `attn = "sdpa"` for a plain (unpacked) forward."""
    from prime_rl.trainer.config import LoRAConfig, TrainerModelConfig
    from prime_rl.trainer.model import setup_model

    torch.manual_seed(seed)
    lora = LoRAConfig(rank=rank, alpha=2.0 * rank, target_modules=targets)
    config = TrainerModelConfig(name=MODEL, dtype="float32", device="cpu", attn_implementation=attn, lora=lora)
    model = setup_model(config).eval()
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if ".lora_B." in name:
                param.copy_(0.05 * torch.randn(param.shape, generator=generator))
    return model


def broadcast(model: torch.nn.Module, server: Server, step: int) -> Path:
    from prime_rl.weights.broadcast import broadcast_weights

    return broadcast_weights(model, server.output_dir, step, keep=10)


def update(server: Server, weight_dir: Path) -> httpx.Response:
    return server.post("/update_weights", {"weight_dir": str(weight_dir)})


def held_lora_ids(server: Server) -> tuple[str, str]:
    """The id of the last adapter registered and the ids vLLM held right after, from the engine's log lines."""
    log = (server.output_dir / "inference.log").read_text()
    return re.findall(r"registered as id (\d+); ids held: (\[[\d, ]*\])", log)[-1]


@pytest.fixture(scope="module")
def base_greedy(server: Server) -> list[list[int]]:
    completions, step = greedy(server, PROMPTS)
    assert step == 0
    return completions


def test_adapter_update_serves_the_trainers_forward_with_the_adapter(server: Server, base_greedy):
    model = adapted_model(seed=1)
    response = update(server, broadcast(model, server, 1))
    assert response.status_code == 200, response.text
    assert response.json()["policy_step"] == 1
    samples, served = [], []
    for i, prompt in enumerate(PROMPTS):
        body = server.chat(messages=messages(prompt), n=8, max_tokens=24, temperature=1.0, seed=i, logprobs=True,
                           return_token_ids=True)  # fmt: skip
        assert body["policy_step"] == 1
        for choice in body["choices"]:
            samples.append((body["prompt_token_ids"], choice["token_ids"]))
            served.append(torch.tensor([c["logprob"] for c in choice["logprobs"]["content"]]))
    expected = trainer_logprobs(samples, 1.0, model)
    base = trainer_logprobs(samples, 1.0)
    diff = torch.cat([s - e for s, e in zip(served, expected, strict=True)])
    off_base = torch.cat([s - b for s, b in zip(served, base, strict=True)])
    r = -diff
    mismatch_kl = float((torch.exp(r) - r - 1).mean())
    print(f"vLLM LoRA vs trainer (peft) logprobs: {diff.numel()} tokens, max abs diff {diff.abs().max():.2e}, "
          f"mismatch KL {mismatch_kl:.2e}; vs the base model: max abs diff {off_base.abs().max():.2e}")  # fmt: skip
    assert mismatch_kl < 1e-3 and diff.abs().max() < 0.05
    assert off_base.abs().max() > 0.5  # the adapter is applied: the base's logprobs are far off
    updated, step = greedy(server, PROMPTS)
    assert step == 1 and updated != base_greedy
    assert held_lora_ids(server) == ("1", "[1]")


def test_requests_in_flight_at_an_adapter_update_restart_on_the_new_adapter(server: Server):
    """Every token of a completion in flight at an update comes from the new adapter (its logprobs equal the trainer's
    forward with adapter 2), and vLLM holds only the new adapter afterwards."""
    from transformers import AutoTokenizer

    from prime_rl.inference.engines.vllm import stop_token_ids
    from prime_rl.utils.models import resolve_model_path

    model = adapted_model(seed=2, attn="sdpa")
    weight_dir = broadcast(model, server, 2)
    # vLLM's CPU build applies LoRA with slow reference ops: 48 tokens still take longer than the 1 s sleep.
    body = {"max_tokens": 48, "min_tokens": 48, "temperature": 0, "logprobs": True, "return_token_ids": True}
    with ThreadPoolExecutor(len(PROMPTS)) as pool:
        futures = [pool.submit(server.chat, messages=messages(p), **body) for p in PROMPTS]
        time.sleep(1.0)  # the update lands mid-generation
        assert not any(f.done() for f in futures)
        assert update(server, weight_dir).status_code == 200
        in_flight = [f.result() for f in futures]
    assert [r["policy_step"] for r in in_flight] == [2] * len(PROMPTS)
    registered, held = held_lora_ids(server)
    assert held == f"[{registered}]"  # the previous adapter was removed when this one came
    path = resolve_model_path(MODEL)
    stop_ids = stop_token_ids(path, AutoTokenizer.from_pretrained(path))
    worst = 0.0
    for response in in_flight:
        prompt, (choice,) = response["prompt_token_ids"], response["choices"]
        with torch.no_grad():
            logits = model(torch.tensor([prompt + choice["token_ids"]])).logits[0, len(prompt) - 1 : -1]
        logits[:, stop_ids] = float("-inf")  # `min_tokens`: vLLM masks the stop tokens until then
        expected = torch.log_softmax(logits, -1).gather(1, torch.tensor(choice["token_ids"])[:, None])[:, 0]
        served = torch.tensor([c["logprob"] for c in choice["logprobs"]["content"]])
        worst = max(worst, float((served - expected).abs().max()))
    print(f"in flight at the adapter update: max abs diff to adapter 2's forward {worst:.2e}")
    assert worst < 1e-2


def test_reload_weights_returns_to_the_base_model(server: Server, base_greedy):
    assert update(server, broadcast(adapted_model(seed=5), server, 5)).status_code == 200
    adapted, step = greedy(server, PROMPTS)
    assert step == 5 and adapted != base_greedy
    assert server.post("/reload_weights").json() == {"status": "ok", "policy_step": 0}
    assert greedy(server, PROMPTS) == (base_greedy, 0)


def test_adapters_the_server_cannot_serve_are_refused(server: Server):
    wide = update(server, broadcast(adapted_model(seed=3, rank=16), server, 3))
    assert wide.status_code == 400 and wide.json()["error"]["param"] == "weight_dir"
    assert "rank r = 16 exceeds the server's `vllm.max_lora_rank` (8)" in wide.json()["error"]["message"]
    assert httpx.get(f"{server.url}/health").json()["policy_step"] == 0


def test_adapter_of_some_projections_only(server: Server):
    """q and v but not k: vLLM fills the missing slice of its fused qkv layer with zeros."""
    model = adapted_model(seed=4, targets=["q_proj", "v_proj"])
    assert update(server, broadcast(model, server, 4)).status_code == 200
    body = server.chat(messages=messages(PROMPTS[0]), n=4, max_tokens=16, temperature=1.0, seed=0, logprobs=True,
                       return_token_ids=True)  # fmt: skip
    samples = [(body["prompt_token_ids"], c["token_ids"]) for c in body["choices"]]
    served = [torch.tensor([c["logprob"] for c in choice["logprobs"]["content"]]) for choice in body["choices"]]
    expected = trainer_logprobs(samples, 1.0, model)
    diff = torch.cat([s - e for s, e in zip(served, expected, strict=True)])
    print(f"q/v-only adapter: max abs diff {diff.abs().max():.2e} over {diff.numel()} tokens")
    assert body["policy_step"] == 4 and diff.abs().max() < 0.05
    assert server.post("/reload_weights").json()["policy_step"] == 0

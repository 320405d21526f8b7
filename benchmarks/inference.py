"""Inference server throughput vs a plain batched `model.generate` of the same prompts, in the same run.

Scenarios (SmolLM2-135M-Instruct, CPU, float32, sampling at temperature 1):
  (a) 64 concurrent chat requests, max_tokens=128, natural stopping (EOS);
  (b) 16 concurrent requests of exactly 128 tokens (min_tokens = max_tokens = 128).
Tokens/s counts completion tokens actually produced (up to and including EOS; the baseline's padding after EOS is
not counted). Time to first token: the server streams (`stream: true`) and the first content chunk is timed; the
baseline's first token is when `generate` hands its first new tokens to a streamer (after the batched prefill).

Usage: python benchmarks/inference.py [--threads 2] [--scenario a|b|both]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

TOPICS = [
    "the moon", "volcanoes", "bread", "rivers", "chess", "bees", "winter", "trains", "music", "the ocean",
    "clocks", "gardens", "mountains", "libraries", "rain", "bicycles",
]  # fmt: skip
TEMPLATES = [
    "Write one short sentence about {}.",
    "Give me a fun fact about {}.",
    "In two sentences, why do people like {}?",
    "Name three words related to {}.",
]


def make_prompts(count: int) -> list[str]:
    return [TEMPLATES[i % len(TEMPLATES)].format(TOPICS[(i // len(TEMPLATES)) % len(TOPICS)]) for i in range(count)]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(port: int, threads: int, batch: int) -> subprocess.Popen:
    exe = Path(sys.executable).with_name("inference")
    cmd = [str(exe), "--server.port", str(port), "--num-threads", str(threads), "--max-batch-size", str(batch)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"inference server exited: {proc.stderr.read()[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.5)
    proc.kill()
    raise RuntimeError("inference server did not become healthy within 300 s")


async def one_request(client: httpx.AsyncClient, url: str, body: dict, start: float) -> tuple[int, float]:
    """Streams one completion; returns (completion tokens, seconds from `start` to the first content chunk)."""
    first = None
    tokens = 0
    async with client.stream("POST", url, json={**body, "stream": True}) as response:
        response.raise_for_status()
        async for line in response.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            if first is None and chunk["choices"] and chunk["choices"][0].get("token_ids"):
                first = time.perf_counter() - start
            if chunk.get("usage"):
                tokens = chunk["usage"]["completion_tokens"]
    return tokens, first if first is not None else float("nan")


async def run_server(port: int, prompts: list[str], params: dict) -> tuple[float, float, int]:
    url = f"http://127.0.0.1:{port}/v1/chat/completions"
    bodies = [
        {"messages": [{"role": "user", "content": p}], "seed": i, "return_token_ids": True, **params}
        for i, p in enumerate(prompts)
    ]
    limits = httpx.Limits(max_connections=len(prompts) + 4)
    async with httpx.AsyncClient(timeout=1800, limits=limits) as client:
        start = time.perf_counter()
        results = await asyncio.gather(*[one_request(client, url, b, start) for b in bodies])
        elapsed = time.perf_counter() - start
    tokens = sum(t for t, _ in results)
    return tokens / elapsed, sum(f for _, f in results) / len(results), tokens


class FirstTokenTimer:
    """A `generate` streamer that records when the first new tokens arrive (its first `put` is the prompt)."""

    def __init__(self):
        self.calls, self.first = 0, None

    def put(self, value):
        self.calls += 1
        if self.calls == 2:
            self.first = time.perf_counter()

    def end(self):
        pass


def run_baseline(model_path: str, prompts: list[str], max_new: int, min_new: int) -> tuple[float, float, int]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_path, padding_side="left")
    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32).eval()
    chats = [[{"role": "user", "content": p}] for p in prompts]
    texts = [tokenizer.apply_chat_template(c, add_generation_prompt=True, tokenize=False) for c in chats]
    enc = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
    timer = FirstTokenTimer()
    torch.manual_seed(0)
    start = time.perf_counter()
    with torch.inference_mode():
        out = model.generate(
            **enc,
            max_new_tokens=max_new,
            min_new_tokens=min_new,
            do_sample=True,
            temperature=1.0,
            top_k=0,
            top_p=1.0,
            pad_token_id=tokenizer.pad_token_id,
            streamer=timer,
        )
    elapsed = time.perf_counter() - start
    new = out[:, enc["input_ids"].shape[1] :].tolist()
    eos = tokenizer.eos_token_id
    tokens = sum(row.index(eos) + 1 if eos in row else len(row) for row in new)
    return tokens / elapsed, timer.first - start, tokens


def scenario(name: str, port: int, model_path: str, prompts: list[str], max_new: int, min_new: int) -> str:
    params = {"max_tokens": max_new, "min_tokens": min_new, "temperature": 1.0}
    ours, ttft, n_ours = asyncio.run(run_server(port, prompts, params))
    base, base_ttft, n_base = run_baseline(model_path, prompts, max_new, min_new)
    print(
        f"[{name}] {len(prompts)} requests: server {ours:.1f} tok/s ({n_ours} tokens, mean TTFT {ttft:.2f} s); "
        f"batched generate {base:.1f} tok/s ({n_base} tokens, TTFT {base_ttft:.2f} s)",
        flush=True,
    )
    return f"{name}: {ours:.1f} tok/s (baseline: {base:.1f} tok/s, ratio: {ours / base:.2f}x)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--scenario", choices=["a", "b", "both"], default="both")
    args = parser.parse_args()
    import torch

    from prime_rl.utils.models import resolve_model_path

    torch.set_num_threads(args.threads)
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    model_path = resolve_model_path("smollm2-135m-instruct")
    port = free_port()
    server = start_server(port, args.threads, 64)
    lines = []
    try:
        asyncio.run(run_server(port, make_prompts(2), {"max_tokens": 4}))  # warm-up
        if args.scenario in ("b", "both"):
            lines.append(scenario("inference_16x128_exact", port, model_path, make_prompts(16), 128, 128))
        if args.scenario in ("a", "both"):
            lines.append(scenario("inference_64x128_natural", port, model_path, make_prompts(64), 128, 0))
    finally:
        server.terminate()
        server.wait(timeout=30)
    for line in lines:
        print(line)


if __name__ == "__main__":
    main()

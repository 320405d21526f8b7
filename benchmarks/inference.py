"""Inference server throughput: one engine vs a plain batched `model.generate` of the same prompts, or the two engines
(`hf`, `vllm`) side by side, in the same run.

Scenarios (SmolLM2-135M-Instruct, CPU, float32, sampling at temperature 1):
  (a) 64 concurrent chat requests, max_tokens=128, natural stopping (EOS);
  (b) 16 concurrent requests of exactly 128 tokens (min_tokens = max_tokens = 128);
  (c) one request of exactly 128 tokens.
Tokens/s counts completion tokens actually produced (up to and including EOS; the baseline's padding after EOS is
not counted). Time to first token: the server streams (`stream: true`) and the first content chunk is timed; the
baseline's first token is when `generate` hands its first new tokens to a streamer (after the batched prefill).
Start-up is the time from launching the server to its first healthy `/health` (vLLM compiles and warms up).

With `--engine both` the servers run one after the other (never together) on the same prompts and seeds, and each
line compares vLLM with the HF engine as the baseline; the vLLM engine needs vLLM installed (`make test-vllm`
creates `.venv-vllm` with its CPU build: run this script with `.venv-vllm/bin/python`).

Usage: python benchmarks/inference.py [--engine hf|vllm|both] [--threads N] [--scenario a|b|c|both|all] [--wait-pid PID]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from prime_rl.utils.net import free_port

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


SCENARIOS = {
    "a": ("inference_64x128_natural", 64, 128, 0),
    "b": ("inference_16x128_exact", 16, 128, 128),
    "c": ("inference_1x128_exact", 1, 128, 128),
}
"""Letter -> (name, requests, max_tokens, min_tokens)."""
SELECTIONS = {"a": "a", "b": "b", "c": "c", "both": "ba", "all": "bac"}
START_TIMEOUT_S = 1800


def start_server(
    port: int, threads: int, batch: int, engine: str, extra: tuple[str, ...] = ()
) -> tuple[subprocess.Popen, float]:
    """Starts `inference --engine <engine> [extra...]`; returns the process and its start-up seconds (launch to
    healthy)."""
    exe = Path(sys.executable).with_name("inference")
    cmd = [str(exe), "--engine", engine, "--server.port", str(port), "--num-threads", str(threads),
           "--max-batch-size", str(batch), *extra]  # fmt: skip
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": os.environ.get("VLLM_CPU_KVCACHE_SPACE", "2")}
    # A file, not a pipe: nobody reads a pipe while the server runs, and a full one would block the server's logging.
    log = Path(tempfile.gettempdir()) / f"benchmark_inference_{engine}_{port}.log"
    start = time.perf_counter()
    with log.open("w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
    while time.perf_counter() - start < START_TIMEOUT_S:
        if proc.poll() is not None:
            raise RuntimeError(f"{engine} inference server exited; {log}:\n{log.read_text()[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return proc, time.perf_counter() - start
        except httpx.HTTPError:
            time.sleep(0.5)
    proc.kill()
    raise RuntimeError(f"{engine} inference server did not become healthy within {START_TIMEOUT_S} s")


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


def serve_and_measure(engine: str, threads: int, letters: str) -> tuple[float, dict[str, tuple[float, float, int]]]:
    """Start-up seconds and `{scenario letter: (tok/s, mean TTFT, tokens)}` of one engine's server."""
    port = free_port()
    server, startup = start_server(port, threads, 64, engine)
    print(f"[{engine}] start-up {startup:.1f} s", flush=True)
    results = {}
    try:
        asyncio.run(run_server(port, make_prompts(2), {"max_tokens": 4}))  # warm-up
        for letter in letters:
            name, count, max_new, min_new = SCENARIOS[letter]
            params = {"max_tokens": max_new, "min_tokens": min_new, "temperature": 1.0}
            results[letter] = asyncio.run(run_server(port, make_prompts(count), params))
            tps, ttft, tokens = results[letter]
            print(f"[{engine}] {name}: {tps:.1f} tok/s ({tokens} tokens, mean TTFT {ttft:.2f} s)", flush=True)
    finally:
        server.terminate()
        server.wait(timeout=60)
    return startup, results


def compare_engines(threads: int, letters: str, wait_pid: int | None = None) -> list[str]:
    """vLLM vs the HF engine (the baseline) on the same prompts, one server at a time; the vLLM server starts once
    process `wait_pid` (e.g. another vLLM server: two do not fit beside each other on a small machine) exited."""
    hf_start, hf = serve_and_measure("hf", threads, letters)
    while wait_pid and Path(f"/proc/{wait_pid}").exists():
        time.sleep(5)
    vllm_start, vllm = serve_and_measure("vllm", threads, letters)
    lines = [
        f"inference_startup_vllm: {vllm_start:.1f} s (baseline: {hf_start:.1f} s, ratio: {vllm_start / hf_start:.2f}x)"
    ]
    for letter in letters:
        name = SCENARIOS[letter][0]
        print(f"[{name}] mean TTFT vllm {vllm[letter][1]:.2f} s, hf {hf[letter][1]:.2f} s", flush=True)
        ratio = vllm[letter][0] / hf[letter][0]
        lines.append(
            f"{name}_vllm: {vllm[letter][0]:.1f} tok/s (baseline: {hf[letter][0]:.1f} tok/s, ratio: {ratio:.2f}x)"
        )
    return lines


def against_generate(engine: str, threads: int, letters: str) -> list[str]:
    """One engine's server vs a batched `model.generate` of the same prompts (the baseline)."""
    from prime_rl.utils.models import resolve_model_path

    model_path = resolve_model_path("smollm2-135m-instruct")
    port = free_port()
    server, _ = start_server(port, threads, 64, engine)
    lines = []
    try:
        asyncio.run(run_server(port, make_prompts(2), {"max_tokens": 4}))  # warm-up
        for letter in letters:
            name, count, max_new, min_new = SCENARIOS[letter]
            lines.append(scenario(name, port, model_path, make_prompts(count), max_new, min_new))
    finally:
        server.terminate()
        server.wait(timeout=60)
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--engine", choices=["hf", "vllm", "both"], default="hf")
    parser.add_argument("--threads", type=int, default=None, help="default: the engine's rule (utils/threads.py)")
    parser.add_argument("--scenario", choices=list(SELECTIONS), help="default: all with --engine both, else both")
    parser.add_argument("--wait-pid", type=int, default=None, help="--engine both: start vLLM once this process exited")
    args = parser.parse_args()
    from prime_rl.utils.threads import setup_threads

    threads = setup_threads(args.threads, "inference", "--threads")  # the server's count, for the baseline too
    letters = SELECTIONS[args.scenario or ("all" if args.engine == "both" else "both")]
    if args.engine == "both":
        lines = compare_engines(threads, letters, args.wait_pid)
    else:
        lines = against_generate(args.engine, threads, letters)
    for line in lines:
        print(line)


if __name__ == "__main__":
    main()

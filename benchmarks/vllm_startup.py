"""Start-up of the compiled vLLM engine on CPU (SmolLM2-135M-Instruct, float32): launch to a healthy `/health`, a first
start on empty compile caches, then a second on the caches the first wrote, for each setting of
`VLLM_USE_AOT_COMPILE`: `1` (vLLM's default with torch >= 2.10; on CPU its cache fails to load, "'function' object has
no attribute 'finalize_loading'", so every start compiles again) and `0` (what the vLLM engine sets on CPU: torch's
own inductor caches). Every start then answers the same greedy request; the tokens and logprobs must be the same in
all of them. One server at a time.

Usage: .venv-vllm/bin/python benchmarks/vllm_startup.py [--settings 0 1] [--threads N]
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
from pathlib import Path

import httpx

from inference import free_port, start_server

PROMPT = "Write one short sentence about the moon."


def greedy(port: int) -> tuple[list[int], list[float]]:
    body = {
        "messages": [{"role": "user", "content": PROMPT}],
        "max_tokens": 32,
        "temperature": 0,
        "logprobs": True,
        "return_token_ids": True,
    }
    response = httpx.post(f"http://127.0.0.1:{port}/v1/chat/completions", json=body, timeout=600)
    response.raise_for_status()
    choice = response.json()["choices"][0]
    return choice["token_ids"], [entry["logprob"] for entry in choice["logprobs"]["content"]]


def start_twice(setting: str, threads: int, caches: Path) -> list[tuple[float, list[int], list[float]]]:
    """Two starts with `VLLM_USE_AOT_COMPILE=setting` on the empty cache directories `caches`: (seconds, tokens,
    logprobs) of each."""
    os.environ |= {
        "VLLM_USE_AOT_COMPILE": setting,
        "VLLM_CACHE_ROOT": str(caches / "vllm"),
        "TORCHINDUCTOR_CACHE_DIR": str(caches / "inductor"),
    }
    starts = []
    for which in ("first", "second"):
        port = free_port()
        server, seconds = start_server(port, threads, 64, "vllm")
        try:
            tokens, logprobs = greedy(port)
        finally:
            server.terminate()
            server.wait(timeout=120)
        load = os.getloadavg()[0]
        print(f"[AOT={setting}] {which} start: {seconds:.1f} s (load {load:.1f}), {len(tokens)} tokens", flush=True)
        starts.append((seconds, tokens, logprobs))
    return starts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--settings", nargs="+", default=["0", "1"], choices=["0", "1"])
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="vllm-startup-"))
    results = {}
    try:
        for setting in args.settings:
            results[setting] = start_twice(setting, args.threads, root / setting)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    for setting, ((first, _, _), (second, _, _)) in results.items():
        print(f"vllm_startup_second_aot{setting}: {second:.1f} s (baseline first start: {first:.1f} s, "
              f"ratio: {second / first:.2f}x)")  # fmt: skip
    runs = [run for starts in results.values() for run in starts]
    same = all(tokens == runs[0][1] for _, tokens, _ in runs)
    diff = max(abs(a - b) for _, _, logprobs in runs for a, b in zip(logprobs, runs[0][2], strict=False))
    print(f"vllm_startup_same_greedy_tokens: {same} (max abs logprob difference {diff:.2e} over {len(runs)} starts)")


if __name__ == "__main__":
    main()

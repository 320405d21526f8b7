"""Threads of the HF inference engine on a shared machine: tok/s at 1 thread, 1 thread pinned (`--pin-threads`) and
2 threads, each with and without a competing CPU process (a one-thread float32 matmul loop started here, like a
trainer beside the server), over alternated rounds.

Scenarios are those of `benchmarks/inference.py`: (a) 64 requests, max_tokens=128, natural stopping; (b) 16 requests
of exactly 128 tokens. Tok/s counts the completion tokens streamed within `--window` seconds (or until every request
finished) divided by the elapsed time, so a badly contended configuration cannot stall the run; unfinished requests
are cancelled. Each round starts every configuration's server anew, in an order that alternates between rounds.
Prints every measurement and, after every round (with `uptime`), per scenario and contention the medians so far:

    inference_64x128_natural_1thread_contended: X tok/s (baseline: 2 threads Y tok/s, ratio: R.RRx)

Usage: python benchmarks/threads.py [--rounds 3] [--window 60] [--scenario a|b|both]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx

from inference import SCENARIOS, SELECTIONS, free_port, make_prompts, run_server, start_server

CONFIGS = {"1thread": (1, ()), "1thread_pinned": (1, ("--pin-threads",)), "2threads": (2, ())}
"""Name -> (engine threads, extra server arguments)."""
COMPETITOR = "import torch\ntorch.set_num_threads(1)\na = torch.randn(512, 512)\nwhile True:\n    a @ a\n"


async def stream_tokens(client: httpx.AsyncClient, url: str, body: dict, counter: list[int]) -> None:
    async with client.stream("POST", url, json={**body, "stream": True}) as response:
        response.raise_for_status()
        async for line in response.aiter_lines():
            if line.startswith("data: ") and line != "data: [DONE]":
                choices = json.loads(line[6:])["choices"]
                counter[0] += sum(len(c.get("token_ids") or []) for c in choices)


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process, all its threads (Linux `/proc/<pid>/stat`)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def windowed_tok_s(port: int, letter: str, window: float) -> tuple[float, int]:
    """Completion tokens streamed within `window` seconds (or until all requests finish): (per second, count)."""
    _, count, max_new, min_new = SCENARIOS[letter]
    url = f"http://127.0.0.1:{port}/v1/chat/completions"
    params = {"max_tokens": max_new, "min_tokens": min_new, "temperature": 1.0, "return_token_ids": True}
    bodies = [
        {"messages": [{"role": "user", "content": p}], "seed": i, **params} for i, p in enumerate(make_prompts(count))
    ]
    counter = [0]
    async with httpx.AsyncClient(timeout=None, limits=httpx.Limits(max_connections=count + 4)) as client:
        start = time.perf_counter()
        tasks = [asyncio.create_task(stream_tokens(client, url, b, counter)) for b in bodies]
        done, pending = await asyncio.wait(tasks, timeout=window)
        elapsed = time.perf_counter() - start
        for task in done:
            task.result()  # a failed request fails the benchmark
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
    await asyncio.sleep(1.0)  # the server drops the cancelled requests at its next step
    return counter[0] / elapsed, counter[0]


def measure_config(name: str, letters: str, window: float, contended_first: bool) -> dict[tuple[str, bool], float]:
    """`{(scenario letter, contended): tok/s}` of one server, uncontended and contended in the given order; also
    prints the CPU seconds the server used (threads spinning at barriers burn CPU without producing tokens)."""
    threads, extra = CONFIGS[name]
    port = free_port()
    server, _ = start_server(port, threads, 64, "hf", extra)
    results = {}
    try:
        asyncio.run(run_server(port, make_prompts(2), {"max_tokens": 4}))  # warm-up
        for contended in (True, False) if contended_first else (False, True):
            competitor = subprocess.Popen([sys.executable, "-c", COMPETITOR]) if contended else None
            try:
                time.sleep(2.0 if contended else 0.0)
                for letter in letters:
                    cpu = cpu_seconds(server.pid)
                    results[letter, contended], tokens = asyncio.run(windowed_tok_s(port, letter, window))
                    cpu = cpu_seconds(server.pid) - cpu
                    state = "contended" if contended else "alone"
                    print(
                        f"  {name:15s} {SCENARIOS[letter][0]} {state}: {results[letter, contended]:.1f} tok/s, "
                        f"{tokens} tokens in {cpu:.1f} server CPU-s",
                        flush=True,
                    )
            finally:
                if competitor is not None:
                    competitor.kill()
                    competitor.wait()
    finally:
        server.terminate()
        server.wait(timeout=60)
    return results


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def summary(rounds: dict[str, list[dict]], letters: str) -> list[str]:
    """Per scenario and contention: the range of every configuration, and the median of 1 thread (pinned or not)
    against the median of 2 threads, over the rounds every configuration completed."""
    done = min(len(r) for r in rounds.values())
    lines = []
    for letter in letters:
        for contended in (False, True):
            state = "contended" if contended else "alone"
            values = {n: [res[letter, contended] for res in rounds[n][:done]] for n in CONFIGS}
            spread = "; ".join(f"{n} {min(v):.1f}-{max(v):.1f}" for n, v in values.items())
            lines.append(f"[{SCENARIOS[letter][0]} {state}] range over {done} round(s): {spread}")
            base = statistics.median(values["2threads"])
            for name in ("1thread", "1thread_pinned"):
                ours = statistics.median(values[name])
                ratio = f"{ours / base:.2f}x" if base > 0 else "n/a (baseline produced no token)"
                lines.append(
                    f"{SCENARIOS[letter][0]}_{name}_{state}: {ours:.1f} tok/s "
                    f"(baseline: 2 threads {base:.1f} tok/s, ratio: {ratio})"
                )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--window", type=float, default=60.0, help="seconds measured per scenario")
    parser.add_argument("--scenario", choices=["a", "b", "both"], default="both")
    args = parser.parse_args()
    letters = SELECTIONS[args.scenario]
    print(f"uptime before: {uptime()}", flush=True)
    rounds: dict[str, list[dict]] = {name: [] for name in CONFIGS}
    for r in range(args.rounds):
        order = list(CONFIGS) if r % 2 == 0 else list(reversed(CONFIGS))
        print(f"round {r + 1}: {', '.join(order)}", flush=True)
        for name in order:
            rounds[name].append(measure_config(name, letters, args.window, contended_first=r % 2 == 1))
        print(f"after round {r + 1}, uptime: {uptime()}", flush=True)
        print("\n".join(summary(rounds, letters)), flush=True)  # a run stopped early still reports


if __name__ == "__main__":
    main()

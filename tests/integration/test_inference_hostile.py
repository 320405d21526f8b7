"""Hostile requests against the in-process server: each is a 4xx naming the field and keeps the connection usable;
a failure inside the engine fails only the request that caused it; abandoned requests stop generating."""

from __future__ import annotations

import http.client
import json
import os
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
import torch
from safetensors.torch import save_file
from test_inference_server import MESSAGES, eos_loving_state, run_server, save_weights

from prime_rl.inference import app as app_module

GOOD = {"messages": MESSAGES, "max_tokens": 3, "seed": 1, "return_token_ids": True}
BODY_LIMIT = 1 << 20


@pytest.fixture(scope="module")
def server(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    with run_server(tiny_model_dir, tmp_path_factory.mktemp("outputs"), server={"max_body_bytes": BODY_LIMIT}) as s:
        yield s


def raw(body: dict, **replace: str) -> bytes:
    """`body` as JSON with some values given as raw JSON text (Infinity, escapes json.dumps would not write)."""
    text = json.dumps({**body, **{k: f"@{k}@" for k in replace}})
    for key, value in replace.items():
        text = text.replace(f'"@{key}@"', value)
    return text.encode()


def deep(levels: int) -> bytes:
    return b'{"messages": ' + b"[" * levels + b"]" * levels + b"}"


CHAT_CASES = [
    ("tiny-temperature-logprobs", {**GOOD, "temperature": 1e-40, "logprobs": True}, 400, "temperature"),
    ("infinite-temperature", raw(GOOD, temperature="Infinity"), 400, "temperature"),
    ("overflowing-temperature", raw(GOOD, temperature="1e999"), 400, "temperature"),
    ("surrogate-model", raw(GOOD, model='"\\ud800"'), 400, "model"),
    (
        "surrogate-key",
        raw(GOOD, messages='[{"role": "user", "content": "x", "\\udc00": 1}]'),
        400,
        "messages.0.\\udc00",
    ),
    ("surrogate-top-level-key", json.dumps(GOOD)[:-1].encode() + b', "\\ud800": 1}', 400, "\\ud800"),
    ("deep-json", deep(100_000), 400, None),
    ("deep-json-under-the-parser-limit", deep(200), 400, "messages" + ".0" * 63),
    ("max-tokens-string", {**GOOD, "max_tokens": "10"}, 400, "max_tokens"),
    ("max-tokens-bool", {**GOOD, "max_tokens": True}, 400, "max_tokens"),
    ("max-tokens-float", {**GOOD, "max_tokens": 1e30}, 400, "max_tokens"),
    ("max-tokens-over-context", {**GOOD, "max_tokens": 257}, 400, "max_tokens"),
    ("min-tokens-over-context", {**GOOD, "max_tokens": None, "min_tokens": 10**6}, 400, "min_tokens"),
    ("logprobs-string", {**GOOD, "logprobs": "yes"}, 400, "logprobs"),
    ("unknown-role", {**GOOD, "messages": [{"role": "wizard", "content": "hi"}]}, 400, "messages.0.role"),
    ("content-object", {**GOOD, "messages": [{"role": "user", "content": {"a": 1}}]}, 400, "messages.0.content"),
    ("top-k-int64-overflow", {**GOOD, "top_k": 2**63}, 400, "top_k"),
    ("top-k-over-vocab", {**GOOD, "top_k": 10**6}, 400, "top_k"),
    ("n-overflow", {**GOOD, "n": 2**64}, 400, "n"),
    ("n-over-batch", {**GOOD, "n": 65}, 400, "n"),
    ("seed-overflow", {**GOOD, "seed": 2**63}, 400, "seed"),
    ("seed-bool", {**GOOD, "seed": False}, 400, "seed"),
    ("token-overflow", {"tokens": [1, 2**64], "max_tokens": 2}, 400, "tokens.1"),
    ("not-an-object", b"[1, 2]", 400, None),
    ("invalid-utf8", b'{"model": "\xff"}', 400, None),
    ("surrogate-stop", raw(GOOD, stop='["\\udbff"]'), 400, "stop.0"),
    ("stream-top-k-overflow", {**GOOD, "stream": True, "top_k": 2**63}, 400, "top_k"),
    ("n-zero", {**GOOD, "n": 0}, 400, "n"),
    ("top-p-zero", {**GOOD, "top_p": 0}, 400, "top_p"),
    ("stop-not-strings", {**GOOD, "stop": ["ok", 1]}, 400, "stop.1"),
    ("body-over-limit", b'{"messages": "' + b"x" * (BODY_LIMIT + 10) + b'"}', 413, None),
]


def send(conn: http.client.HTTPConnection, path: str, body: dict | bytes) -> tuple[int, dict]:
    payload = body if isinstance(body, bytes) else json.dumps(body).encode()
    conn.request("POST", path, body=payload, headers={"Content-Type": "application/json"})
    response = conn.getresponse()
    return response.status, json.loads(response.read())


def assert_refused_then_served(server, path: str, body: dict | bytes, status: int, param: str | None) -> dict:
    """Sends `body`, checks the error, then a good request on the same connection (same socket)."""
    conn = http.client.HTTPConnection(server.url.removeprefix("http://"), timeout=120)
    try:
        conn.connect()
        sock = conn.sock
        got, answer = send(conn, path, body)
        assert got == status, answer
        assert answer["error"]["param"] == param and answer["error"]["code"] == status, answer
        assert conn.sock is sock, "the server closed the keep-alive connection"
        ok, good = send(conn, "/v1/chat/completions", GOOD)
        assert ok == 200 and len(good["choices"][0]["token_ids"]) == 3
        assert conn.sock is sock
        return answer["error"]
    finally:
        conn.close()


@pytest.mark.parametrize(("body", "status", "param"), [c[1:] for c in CHAT_CASES], ids=[c[0] for c in CHAT_CASES])
def test_hostile_chat_request_is_a_4xx_naming_the_field_and_keeps_the_connection(server, body, status, param):
    path = "/v1/chat/completions/tokens" if isinstance(body, dict) and "tokens" in body else "/v1/chat/completions"
    error = assert_refused_then_served(server, path, body, status, param)
    assert error["message"]


def test_a_chunked_body_over_the_limit_is_a_413(server):
    def chunks():
        for _ in range(BODY_LIMIT // 65536 + 2):
            yield b" " * 65536

    response = httpx.post(f"{server.url}/v1/chat/completions", content=chunks(), timeout=60)
    assert response.status_code == 413 and "exceeds the server's limit" in response.json()["error"]["message"]


def test_error_messages_state_the_bound(server):
    tiny = assert_refused_then_served(server, "/v1/chat/completions", CHAT_CASES[0][1], 400, "temperature")
    assert tiny["message"] == "`temperature` must be 0 (greedy) or at least 0.001 (got 1e-40)"
    top_k = assert_refused_then_served(server, "/v1/chat/completions", {**GOOD, "top_k": 10**6}, 400, "top_k")
    assert top_k["message"] == f"`top_k` (1000000) exceeds the vocabulary size {server.engine.runner.vocab_size}"
    big = CHAT_CASES[-1][1]
    size = assert_refused_then_served(server, "/v1/chat/completions", big, 413, None)
    assert size["message"] == (
        f"the request body ({len(big)} bytes) exceeds the server's limit of {BODY_LIMIT} bytes (max_body_bytes)"
    )
    role = {**GOOD, "messages": [{"role": "wizard", "content": "hi"}]}
    wizard = assert_refused_then_served(server, "/v1/chat/completions", role, 400, "messages.0.role")
    assert wizard["message"] == "`messages.0.role` is `wizard`; expected one of `system`, `user`, `assistant`, `tool`"


def test_smallest_temperature_with_logprobs_is_finite(server):
    body = {**GOOD, "temperature": 1e-3, "logprobs": True, "top_logprobs": 5}
    answer = server.chat(**body)
    values = [t["logprob"] for c in answer["choices"][0]["logprobs"]["content"] for t in [c, *c["top_logprobs"]]]
    assert all(v == v and abs(v) != float("inf") for v in values)


def hostile_weight_dirs(server, tmp_path: Path) -> list[tuple[str, str, int]]:
    """(name, weight_dir, expected status) of every refused update; each leaves the served weights untouched."""
    root = server.output_dir / "hostile"
    root.mkdir(exist_ok=True)
    (root / "loop").symlink_to(root / "loop")
    fifo = root / "step_40"
    fifo.mkdir()
    os.mkfifo(fifo / "model.safetensors")
    leak = root / "step_41"
    leak.mkdir()
    state = eos_loving_state(server.model_dir)
    save_file({k: v.contiguous() for k, v in state.items()}, tmp_path / "model.safetensors")
    (leak / "model.safetensors").symlink_to(tmp_path / "model.safetensors")
    nan = save_weights(server, "step_42", {k: torch.full_like(v, float("nan")) for k, v in state.items()})
    ints = save_weights(server, "step_43", {k: v.to(torch.int32) for k, v in state.items()})
    wrong_shape = save_weights(server, "step_44", {**state, "model.norm.weight": torch.ones(3)})
    return [
        ("symlink-loop", str(root / "loop" / "step_1"), 400),
        ("nul-byte", str(root / "step_1\x00"), 400),
        ("long-path", str(root / ("a" * 5000)), 400),
        ("fifo", str(fifo), 400),
        ("symlink-outside", str(leak), 403),
        ("non-finite", str(nan), 400),
        ("int32", str(ints), 400),
        ("wrong-shape", str(wrong_shape), 400),
    ]


def test_hostile_weight_updates_are_refused_and_the_previous_weights_keep_serving(server, tmp_path: Path):
    before = server.chat(max_tokens=6, seed=2, return_token_ids=True)
    messages = {}
    for name, weight_dir, status in hostile_weight_dirs(server, tmp_path):
        error = assert_refused_then_served(server, "/update_weights", {"weight_dir": weight_dir}, status, "weight_dir")
        messages[name] = error["message"]
    step = assert_refused_then_served(
        server, "/update_weights", {"weight_dir": str(server.output_dir / "x"), "step": 2**64}, 400, "step"
    )
    assert "non-negative integer" in step["message"]
    assert "Symlink loop" in messages["symlink-loop"] and "NUL byte" in messages["nul-byte"]
    assert (
        messages["long-path"]
        == "`weight_dir` is " + f"{len(str(server.output_dir)) + 5009} characters long (at most 4096)"
    )
    assert messages["fifo"].endswith("model.safetensors` is not a regular file")
    assert "outside the output directory" in messages["symlink-outside"]
    assert "holds non-finite values (NaN or inf)" in messages["non-finite"]
    assert "has dtype torch.int32; weights must be floating point" in messages["int32"]
    assert "has shape (3,)" in messages["wrong-shape"]
    after = server.chat(max_tokens=6, seed=2, return_token_ids=True)
    assert after["policy_step"] == 0 and after["choices"] == before["choices"]


# ---------------------------------------------------------------- one bad request among good ones


def good_body(i: int) -> dict:
    messages = [{"role": "user", "content": f"Say {i} twice" + "?" * (i % 5)}]
    return {"messages": messages, "max_tokens": 6 + i % 4, "seed": 50 + i, "return_token_ids": True, "n": 1 + i % 2}


def token_ids(body: dict) -> list[list[int]]:
    return [c["token_ids"] for c in body["choices"]]


def test_a_hostile_request_among_16_good_ones_fails_alone(server):
    solo = [server.chat(**good_body(i)) for i in range(16)]
    bad = {**good_body(99), "top_k": 2**63}
    with ThreadPoolExecutor(17) as pool:
        futures = [pool.submit(server.post, "/v1/chat/completions", good_body(i)) for i in range(8)]
        hostile = pool.submit(server.post, "/v1/chat/completions", bad)
        futures += [pool.submit(server.post, "/v1/chat/completions", good_body(i)) for i in range(8, 16)]
        answers = [f.result() for f in futures]
    assert hostile.result().status_code == 400 and hostile.result().json()["error"]["param"] == "top_k"
    assert [a.status_code for a in answers] == [200] * 16
    assert [token_ids(a.json()) for a in answers] == [token_ids(s) for s in solo]


CULPRIT = [7, 7, 7, 13]


@pytest.mark.parametrize("phase", ["prefill", "decode"])
def test_an_engine_step_failure_fails_only_the_request_that_caused_it(server, monkeypatch, phase):
    """A fault injected into the model forward whenever the culprit's prompt is in the batch: the culprit gets a 500,
    the 16 requests that shared its batch are retried and answer exactly what they answer alone."""
    runner = server.engine.runner
    solo = [server.chat(**good_body(i)) for i in range(16)]
    real = getattr(runner, phase)
    faults = []

    def faulty(*args, **kwargs):
        involved = server.engine.scheduler.active
        if any(s.request.prompt_ids == CULPRIT and len(s.token_ids) >= (phase == "decode") for s in involved):
            faults.append(len(involved))
            raise RuntimeError("injected fault")
        return real(*args, **kwargs)

    monkeypatch.setattr(runner, phase, faulty)
    culprit = {"tokens": CULPRIT, "max_tokens": 8, "min_tokens": 8}
    with ThreadPoolExecutor(17) as pool:
        futures = [pool.submit(server.post, "/v1/chat/completions", good_body(i)) for i in range(8)]
        bad = pool.submit(server.post, "/v1/chat/completions/tokens", culprit)
        futures += [pool.submit(server.post, "/v1/chat/completions", good_body(i)) for i in range(8, 16)]
        answers = [f.result() for f in futures]
    assert bad.result().status_code == 500
    assert len(faults) >= 2 and faults[0] > 1 and faults[-1] == 1  # first in a shared batch, last alone
    assert bad.result().json()["error"]["message"] == "the engine failed on this request: RuntimeError: injected fault"
    assert [a.status_code for a in answers] == [200] * 16
    assert [token_ids(a.json()) for a in answers] == [token_ids(s) for s in solo]
    monkeypatch.undo()
    assert server.chat(max_tokens=2)["usage"]["completion_tokens"] == 2


# ---------------------------------------------------------------- abandoned requests


def test_a_non_streamed_request_is_cancelled_when_its_client_disconnects(server):
    body = json.dumps({"messages": MESSAGES, "max_tokens": 250, "min_tokens": 250}).encode()
    host, port = server.url.removeprefix("http://").split(":")
    steps = server.engine.stats["decode_steps"]
    with socket.create_connection((host, int(port))) as sock:
        head = "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        sock.sendall(f"{head}Content-Length: {len(body)}\r\n\r\n".encode() + body)
        deadline = time.monotonic() + 60
        while not server.engine.scheduler.active and time.monotonic() < deadline:
            time.sleep(0.01)
        assert server.engine.scheduler.active
    deadline = time.monotonic() + 30
    while server.engine.scheduler.in_flight and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not server.engine.scheduler.in_flight
    assert server.engine.stats["decode_steps"] - steps < 249
    assert server.chat(max_tokens=2)["usage"]["completion_tokens"] == 2


def test_prompt_rendering_runs_off_the_event_loop(server, monkeypatch):
    """While one request's prompt is being rendered (held here on an event), `/health` still answers."""
    release = threading.Event()
    real = app_module._render

    def held(*args):
        release.wait(timeout=60)
        return real(*args)

    monkeypatch.setattr(app_module, "_render", held)
    with ThreadPoolExecutor(1) as pool:
        pending = pool.submit(server.post, "/v1/chat/completions", GOOD)
        time.sleep(0.2)
        assert httpx.get(f"{server.url}/health", timeout=5).status_code == 200
        assert not pending.done()
        release.set()
        assert pending.result().status_code == 200

"""InferenceClient against real local HTTP servers serving canned chat-completions and control responses."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from prime_rl.client import InferenceClient, InferenceError, InferenceUnreachable, RetryPolicy
from prime_rl.orchestrator.config import SamplingConfig
from prime_rl.utils.net import free_port


def canned_response(body: dict, policy_step: int) -> dict:
    choices = []
    for i in range(body["n"]):
        ids = [10 + i, 11, 2]
        choices.append(
            {
                "index": i,
                "message": {"role": "assistant", "content": f"reply {i}"},
                "token_ids": ids,
                "logprobs": {"content": [{"token": str(t), "logprob": -0.25 * (j + 1)} for j, t in enumerate(ids)]},
                "finish_reason": "stop" if i == 0 else "length",
            }
        )
    prompt = body.get("tokens", [1, 2, 3])
    return {"choices": choices, "prompt_token_ids": prompt, "policy_step": policy_step}


class FakeServer:
    """A threaded HTTP server; `fail_first` requests get HTTP 503, `status` forces a status for all requests."""

    def __init__(self, name: str, policy_step: int = 0, fail_first: int = 0, status: int | None = None, respond=None):
        self.name, self.policy_step, self.fail_first, self.status = name, policy_step, fail_first, status
        self.respond = respond or (lambda body: canned_response(body, policy_step))
        self.requests: list[tuple[str, dict, dict]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                server.requests.append((self.path, body, dict(self.headers)))
                if server.status is not None or len(server.requests) <= server.fail_first:
                    code, payload = server.status or 503, {"error": f"{server.name} busy"}
                else:
                    code, payload = 200, server.respond(body)
                data = json.dumps(payload).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                server.requests.append((self.path, {}, dict(self.headers)))
                routes = {"/health": {"status": "ok"}, "/v1/models": {"object": "list", "data": [{"id": server.name}]}}
                data = json.dumps(routes[self.path]).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.02,), daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def servers() -> Iterator[list[FakeServer]]:
    started: list[FakeServer] = []
    yield started
    for server in started:
        server.close()


async def call(client: InferenceClient, coro):
    try:
        return await coro
    finally:
        await client.close()


def test_chat_sends_sampling_fields_and_parses_choices(servers):
    servers.append(server := FakeServer("a", policy_step=4))
    client = InferenceClient([server.url], "my-model", api_key="secret")
    sampling = SamplingConfig(temperature=0.7, top_k=20, max_tokens=16, stop=["</answer>"])
    messages = [{"role": "user", "content": "hi"}]
    completions = asyncio.run(call(client, client.chat(messages, sampling, n=2, seed=3)))

    path, body, headers = server.requests[0]
    assert path == "/v1/chat/completions"
    assert body == {
        "model": "my-model",
        "n": 2,
        "temperature": 0.7,
        "top_p": 1.0,
        "top_k": 20,
        "min_p": 0.0,
        "max_tokens": 16,
        "min_tokens": 0,
        "stop": ["</answer>"],
        "seed": 3,
        "logprobs": True,
        "return_token_ids": True,
        "messages": messages,
    }
    assert headers["Authorization"] == "Bearer secret"
    assert [c.text for c in completions] == ["reply 0", "reply 1"]
    assert completions[1].completion_ids == [11, 11, 2]
    assert completions[0].logprobs == [-0.25, -0.5, -0.75]
    assert completions[0].prompt_ids == [1, 2, 3]
    assert [c.finish_reason for c in completions] == ["stop", "length"]
    assert completions[0].policy_step == 4


def test_chat_tokens_posts_prompt_ids(servers):
    servers.append(server := FakeServer("a"))
    client = InferenceClient([server.url + "/"], "m")
    (completion,) = asyncio.run(call(client, client.chat_tokens([5, 6, 7], SamplingConfig())))
    path, body, _ = server.requests[0]
    assert path == "/v1/chat/completions/tokens"
    assert body["tokens"] == [5, 6, 7] and body["messages"] == []
    assert completion.prompt_ids == [5, 6, 7]


def test_round_robin_over_servers(servers):
    servers.extend([a := FakeServer("a", policy_step=1), b := FakeServer("b", policy_step=2)])
    client = InferenceClient([a.url, b.url], "m")

    async def four():
        return [(await client.chat([], SamplingConfig()))[0].policy_step for _ in range(4)]

    assert asyncio.run(call(client, four())) == [1, 2, 1, 2]
    assert len(a.requests) == len(b.requests) == 2


def test_retries_5xx_then_succeeds(servers):
    servers.append(server := FakeServer("a", fail_first=2))
    client = InferenceClient([server.url], "m", retry_policy=RetryPolicy(retries=5, first_backoff=0.0))
    (completion,) = asyncio.run(call(client, client.chat([], SamplingConfig())))
    assert completion.text == "reply 0" and len(server.requests) == 3


def test_unreachable_server_error_names_url():
    url = f"http://127.0.0.1:{free_port()}/v1"
    client = InferenceClient([url], "m", retry_policy=RetryPolicy(retries=2, first_backoff=0.0))
    with pytest.raises(
        InferenceUnreachable,
        match=rf"inference server\(s\) {url}/chat/completions unreachable: 3 attempts .*\(client.retries = 2\); "
        r"last: .*Connect",
    ):
        asyncio.run(call(client, client.chat([], SamplingConfig())))


def test_persistent_5xx_and_4xx(servers):
    servers.extend([busy := FakeServer("busy", status=500), bad := FakeServer("bad", status=422)])
    client = InferenceClient([busy.url], "m", retry_policy=RetryPolicy(retries=1, first_backoff=0.0))
    with pytest.raises(InferenceUnreachable, match=r"unreachable: 2 attempts .*; last: .*HTTP 500: .*busy busy"):
        asyncio.run(call(client, client.chat([], SamplingConfig())))
    client = InferenceClient([bad.url], "m", retry_policy=RetryPolicy(retries=5, first_backoff=0.0))
    with pytest.raises(InferenceError, match=rf"{bad.url}/chat/completions refused the request: HTTP 422"):
        asyncio.run(call(client, client.chat([], SamplingConfig())))
    assert len(bad.requests) == 1  # client errors are not retried


def test_malformed_response_names_server(servers):
    def no_prompt_ids(body):
        return {"choices": [{"message": {"content": "x"}, "token_ids": [1], "finish_reason": "stop"}]}

    def missing_logprobs(body):
        return {**canned_response(body, 0), "choices": [{**canned_response(body, 0)["choices"][0], "logprobs": None}]}

    servers.extend([a := FakeServer("a", respond=no_prompt_ids), b := FakeServer("b", respond=missing_logprobs)])
    client = InferenceClient([a.url], "m")
    with pytest.raises(InferenceError, match=rf"malformed response from {a.url}/chat/completions: KeyError"):
        asyncio.run(call(client, client.chat([], SamplingConfig())))
    client = InferenceClient([b.url], "m")
    with pytest.raises(InferenceError, match=r"ValueError: 3 token ids but 0 logprobs"):
        asyncio.run(call(client, client.chat([], SamplingConfig())))


def test_retry_policy_bounds_attempts_or_time():
    assert [RetryPolicy(deadline=1).backoff(a) for a in range(7)] == [0.5, 1.0, 2.0, 4.0, 8.0, 10.0, 10.0]
    attempts = RetryPolicy(retries=2)
    assert [attempts.wait(a, elapsed=0.0) for a in range(4)] == [0.5, 1.0, None, None]
    deadline = RetryPolicy(deadline=3.0)  # the last wait is cut so that the last retry starts at the deadline
    assert [deadline.wait(2, t) for t in (0.9, 1.5, 3.0)] == [2.0, 1.5, None] and deadline.wait(0, 0.0) == 0.5
    both = RetryPolicy(retries=5, deadline=1.0)
    assert (both.wait(1, 0.0), both.wait(1, 0.5), both.wait(5, 0.0), both.wait(1, 1.0)) == (1.0, 0.5, None, None)
    assert RetryPolicy(deadline=0.3, key="client.retry_timeout").describe() == "client.retry_timeout = 0.3"
    assert both.describe() == "client.retries = 5, client.retry_timeout = 1"
    # A health poll retries every 0.5 s through a vLLM start-up: attempt 1100 (~9 min) once overflowed the float.
    poll = RetryPolicy(deadline=1800.0, first_backoff=0.5, max_backoff=0.5)
    assert poll.backoff(1100) == poll.wait(1100, 550.0) == 0.5
    with pytest.raises(ValueError, match=r"RetryPolicy needs `retries` or `deadline`"):
        RetryPolicy()


def test_update_weights_reaches_every_server_under_the_retry_policy(servers, tmp_path):
    def ok(body):
        return {"status": "ok", "policy_step": body["step"]}

    servers.extend([a := FakeServer("a", fail_first=2, respond=ok), b := FakeServer("b", respond=ok)])
    client = InferenceClient([a.url, b.url], "m", retry_policy=RetryPolicy(retries=2, first_backoff=0.0))
    assert asyncio.run(call(client, client.update_weights(tmp_path, 7))) == 7
    assert [path for path, _, _ in a.requests] == ["/update_weights"] * 3 and len(b.requests) == 1
    assert a.requests[-1][1] == {"weight_dir": str(tmp_path.resolve()), "step": 7}

    servers.append(c := FakeServer("c", fail_first=3, respond=ok))
    client = InferenceClient([c.url], "m", retry_policy=RetryPolicy(retries=2, first_backoff=0.0))
    root = c.url.removesuffix("/v1")
    with pytest.raises(InferenceUnreachable, match=rf"{root}/update_weights unreachable: 3 attempts .*HTTP 503"):
        asyncio.run(call(client, client.update_weights(tmp_path, 7)))


def test_control_requests_refused_or_unreachable_name_the_url(servers, tmp_path):
    servers.append(bad := FakeServer("bad", status=403))
    client = InferenceClient([bad.url], "m", retry_policy=RetryPolicy(retries=3, first_backoff=0.0))
    root = bad.url.removesuffix("/v1")
    with pytest.raises(InferenceError, match=rf"^{root}/update_weights refused the request: HTTP 403: .*bad busy"):
        asyncio.run(call(client, client.update_weights(tmp_path)))
    assert len(bad.requests) == 1 and bad.requests[0][1] == {"weight_dir": str(tmp_path.resolve())}

    root = f"http://127.0.0.1:{free_port()}"
    client = InferenceClient([f"{root}/v1"], "m", retry_policy=RetryPolicy(deadline=0.3, first_backoff=0.05))
    with pytest.raises(InferenceUnreachable) as reload_error:
        asyncio.run(call(client, client.reload_weights()))
    message = str(reload_error.value)
    assert message.startswith(f"inference server(s) {root}/reload_weights unreachable: ")
    assert "(client.retry_timeout = 0.3)" in message and "ConnectError" in message
    assert int(message.split(": ")[1].split(" attempts")[0]) >= 3  # 0.05 + 0.1 + ... within 0.3 s

    client = InferenceClient([f"{root}/v1"], "m")
    health = rf"^inference server {root} not healthy after 0.2s: .*{root}/health unreachable: 2 attempts .*= 0.2\)"
    with pytest.raises(InferenceUnreachable, match=health):
        asyncio.run(call(client, client.wait_healthy(0.2)))


def test_health_and_models_strip_v1_once(servers):
    servers.extend([a := FakeServer("a"), b := FakeServer("b")])
    client = InferenceClient([a.url, b.url + "/"], "m", api_key="k")

    async def go():
        await client.wait_healthy(1.0)
        return await client.health(), await client.models(), await client.models()

    assert asyncio.run(call(client, go())) == ([{"status": "ok"}] * 2, ["a"], ["b"])
    assert [path for path, _, _ in a.requests] == ["/health", "/health", "/v1/models"]
    assert all(headers["Authorization"] == "Bearer k" for _, _, headers in a.requests + b.requests)


def test_launcher_wait_healthy_stops_when_a_child_dies(servers):
    import time

    from prime_rl.launcher.supervise import wait_healthy

    class DeadChild:
        def poll(self):
            return 3

    child, start = DeadChild(), time.monotonic()
    assert wait_healthy(f"http://127.0.0.1:{free_port()}", 30, [child]) is child
    assert time.monotonic() - start < 2
    servers.append(a := FakeServer("a"))
    assert wait_healthy(a.url, 5, []) is None

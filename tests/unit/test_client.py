"""SamplingClient against real local HTTP servers serving canned chat-completions responses."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from prime_rl.environments import SamplingArgs, SamplingClient, SamplingError


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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def call(client: SamplingClient, coro):
    try:
        return await coro
    finally:
        await client.close()


def test_chat_sends_sampling_fields_and_parses_choices(servers):
    servers.append(server := FakeServer("a", policy_step=4))
    client = SamplingClient([server.url], "my-model", api_key="secret")
    sampling = SamplingArgs(temperature=0.7, top_k=20, max_tokens=16, stop=["</answer>"], seed=3)
    messages = [{"role": "user", "content": "hi"}]
    completions = asyncio.run(call(client, client.chat(messages, sampling, n=2)))

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
    client = SamplingClient([server.url + "/"], "m")
    (completion,) = asyncio.run(call(client, client.chat_tokens([5, 6, 7], SamplingArgs())))
    path, body, _ = server.requests[0]
    assert path == "/v1/chat/completions/tokens"
    assert body["tokens"] == [5, 6, 7] and body["messages"] == []
    assert completion.prompt_ids == [5, 6, 7]


def test_round_robin_over_servers(servers):
    servers.extend([a := FakeServer("a", policy_step=1), b := FakeServer("b", policy_step=2)])
    client = SamplingClient([a.url, b.url], "m")

    async def four():
        return [(await client.chat([], SamplingArgs()))[0].policy_step for _ in range(4)]

    assert asyncio.run(call(client, four())) == [1, 2, 1, 2]
    assert len(a.requests) == len(b.requests) == 2


def test_retries_5xx_then_succeeds(servers):
    servers.append(server := FakeServer("a", fail_first=2))
    client = SamplingClient([server.url], "m", retry_backoff=0.0)
    (completion,) = asyncio.run(call(client, client.chat([], SamplingArgs())))
    assert completion.text == "reply 0" and len(server.requests) == 3


def test_unreachable_server_error_names_url():
    url = f"http://127.0.0.1:{free_port()}/v1"
    client = SamplingClient([url], "m", max_retries=2, retry_backoff=0.0)
    with pytest.raises(
        SamplingError, match=rf"inference server\(s\) {url}/chat/completions failed 3 attempts; last: .*Connect"
    ):
        asyncio.run(call(client, client.chat([], SamplingArgs())))


def test_persistent_5xx_and_4xx(servers):
    servers.extend([busy := FakeServer("busy", status=500), bad := FakeServer("bad", status=422)])
    client = SamplingClient([busy.url], "m", max_retries=1, retry_backoff=0.0)
    with pytest.raises(SamplingError, match=r"failed 2 attempts; last: .*HTTP 500: .*busy busy"):
        asyncio.run(call(client, client.chat([], SamplingArgs())))
    client = SamplingClient([bad.url], "m", retry_backoff=0.0)
    with pytest.raises(SamplingError, match=rf"{bad.url}/chat/completions refused the request: HTTP 422"):
        asyncio.run(call(client, client.chat([], SamplingArgs())))
    assert len(bad.requests) == 1  # client errors are not retried


def test_malformed_response_names_server(servers):
    def no_prompt_ids(body):
        return {"choices": [{"message": {"content": "x"}, "token_ids": [1], "finish_reason": "stop"}]}

    def missing_logprobs(body):
        return {**canned_response(body, 0), "choices": [{**canned_response(body, 0)["choices"][0], "logprobs": None}]}

    servers.extend([a := FakeServer("a", respond=no_prompt_ids), b := FakeServer("b", respond=missing_logprobs)])
    client = SamplingClient([a.url], "m")
    with pytest.raises(SamplingError, match=rf"malformed response from {a.url}/chat/completions: KeyError"):
        asyncio.run(call(client, client.chat([], SamplingArgs())))
    client = SamplingClient([b.url], "m")
    with pytest.raises(SamplingError, match=r"ValueError: 3 token ids but 0 logprobs"):
        asyncio.run(call(client, client.chat([], SamplingArgs())))

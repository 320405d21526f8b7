"""An engine that can no longer serve (vLLM's engine core killed under the server): `/health` answers 503 with the
engine's reason, and the server stops and returns that reason instead of answering every request with a 500."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import httpx
import pytest

from prime_rl.inference import server as server_module
from prime_rl.inference.app import create_app
from prime_rl.inference.engines.base import Engine

REASON = "vLLM's engine core died (test)"


class FailingEngine(Engine):
    """Serves nothing; `failure()` reports `REASON` once `fail` is set."""

    def __init__(self):
        self.max_model_len, self.policy_step = 64, 2
        self.fail = threading.Event()

    def start(self) -> None: ...

    def shutdown(self) -> None: ...

    def check(self, prompt_ids, params) -> int:
        return 1

    async def generate(self, prompt_ids, params, on_token=None):
        raise AssertionError("not called")

    async def update_weights(self, weight_dir, step) -> None: ...

    async def reload_weights(self) -> None: ...

    def failure(self) -> str | None:
        return REASON if self.fail.is_set() else None


def health(app) -> httpx.Response:
    async def get() -> httpx.Response:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
            return await client.get("/health")

    return asyncio.run(get())


def test_health_is_503_with_the_engines_reason_once_it_failed():
    engine = FailingEngine()
    app = create_app(engine, None, "m", set(), output_dir=Path("."))
    ok = health(app)
    assert (ok.status_code, ok.json()) == (200, {"status": "ok", "policy_step": 2})
    engine.fail.set()
    failed = health(app)
    assert failed.status_code == 503
    assert failed.json()["error"] == {"message": REASON, "type": "service_unavailable", "param": None, "code": 503}


def test_the_server_stops_and_returns_the_engines_failure(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(server_module, "ENGINE_POLL_SECONDS", 0.05)
    engine = FailingEngine()
    app = create_app(engine, None, "m", set(), output_dir=Path("."))
    threading.Timer(0.5, engine.fail.set).start()
    start = time.monotonic()
    assert server_module.run_until_failure(app, engine, "127.0.0.1", 0) == REASON
    assert 0.5 <= time.monotonic() - start < 10


def test_a_healthy_engine_is_served_until_the_server_is_stopped(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(server_module, "ENGINE_POLL_SECONDS", 0.05)
    engine = FailingEngine()
    app = create_app(engine, None, "m", set(), output_dir=Path("."))
    servers = []
    original = server_module.uvicorn.Server

    def record(config):
        servers.append(original(config))
        return servers[-1]

    monkeypatch.setattr(server_module.uvicorn, "Server", record)
    threading.Timer(0.5, lambda: setattr(servers[0], "should_exit", True)).start()
    assert server_module.run_until_failure(app, engine, "127.0.0.1", 0) is None

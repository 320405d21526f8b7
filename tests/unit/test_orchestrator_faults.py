"""Inference server faults: failing requests are retried within `client.retry_timeout`, then the orchestrator stops
with an error naming the server; a transient failure costs nothing."""

import asyncio
import sys

import pytest
from test_orchestrator_loop import FakeServer, _run

from prime_rl.client import InferenceClient, InferenceUnreachable, RetryPolicy
from prime_rl.orchestrator.cli import main
from prime_rl.orchestrator.config import OrchestratorConfig, SamplingConfig
from prime_rl.orchestrator.orchestrator import run, setup_client
from prime_rl.utils.metrics import read_metrics


def test_orchestrator_client_retries_for_retry_timeout_and_remembers():
    client = setup_client(OrchestratorConfig(client={"retry_timeout": 7}))
    assert client.retry_policy == RetryPolicy(deadline=7, key="client.retry_timeout")
    assert client.remember_unreachable and [client.retry_policy.backoff(a) for a in (0, 4, 5)] == [0.5, 8.0, 10.0]


def test_unreachable_server_retried_for_the_budget_then_named():
    async def go():
        retry = RetryPolicy(deadline=0.3, first_backoff=0.05, key="client.retry_timeout")
        client = InferenceClient(["http://127.0.0.1:9/v1"], "m", retry_policy=retry, remember_unreachable=True)
        try:
            with pytest.raises(InferenceUnreachable) as first:
                await client.chat([{"role": "user", "content": "hi"}], SamplingConfig())
            with pytest.raises(InferenceUnreachable) as second:  # later requests fail at once, same error
                await client.chat([{"role": "user", "content": "hi"}], SamplingConfig())
        finally:
            await client.close()
        return str(first.value), second.value is first.value

    message, same = asyncio.run(go())
    assert same
    assert message.startswith("inference server(s) http://127.0.0.1:9/v1/chat/completions unreachable: ")
    assert "(client.retry_timeout = 0.3)" in message and "ConnectError" in message
    assert int(message.split(": ")[1].split(" attempts")[0]) >= 3  # 0.05 + 0.1 + ... within 0.3 s


def test_transient_5xx_is_retried_without_errored_rollouts(tmp_path):
    with FakeServer(failures=2) as server:
        seen = _run(tmp_path, server.port, 0, max_steps=2, client_extra={"retry_timeout": 30})
    assert [b.step for b in seen] == [0, 1]
    assert all(r["error/count"] == 0 for r in read_metrics(tmp_path / "metrics/orchestrator.jsonl"))
    assert server.requests == 4 + 2


def test_server_failing_mid_run_stops_the_orchestrator_naming_it(tmp_path):
    with FakeServer(failures=-1) as server:
        config = OrchestratorConfig(
            output_dir=tmp_path, max_steps=2, batch_size=6, rollouts_per_example=3,
            client={"base_url": [f"http://127.0.0.1:{server.port}/v1"], "retry_timeout": 0.2},
        )  # fmt: skip
        with pytest.raises(InferenceUnreachable, match=rf"http://127.0.0.1:{server.port}/v1/chat/completions .*503"):
            asyncio.run(run(config))
    assert not (tmp_path / "rollouts/step_0").exists()  # no batch of errored rollouts was written


def test_orchestrator_command_prints_one_line_and_exits_1(tmp_path, monkeypatch, capsys):
    with FakeServer(failures=-1) as server:
        argv = ["orchestrator", "--output-dir", str(tmp_path), "--client.base-url", f'["http://127.0.0.1:{server.port}/v1"]',
                "--client.retry-timeout", "0", "--batch-size", "2", "--rollouts-per-example", "2"]  # fmt: skip
        monkeypatch.setattr(sys, "argv", argv)
        with pytest.raises(SystemExit) as exit_info:
            main()
    assert exit_info.value.code == 1
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("orchestrator: error:")]
    assert len(errors) == 1 and f"http://127.0.0.1:{server.port}" in errors[0]

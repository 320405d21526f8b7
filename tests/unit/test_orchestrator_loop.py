"""The orchestrator loop against a fake inference server (HTTP, same routes) and a fake trainer thread."""

import asyncio
import json
import random
import threading
import time

import pytest
import uvicorn
from fastapi import FastAPI
from fastapi.responses import JSONResponse

from prime_rl.orchestrator.config import OrchestratorConfig
from prime_rl.orchestrator.orchestrator import run
from prime_rl.transport.filesystem import FileSystemReceiver, FileSystemSender
from prime_rl.utils.fs import stable_dir
from prime_rl.utils.metrics import read_metrics
from prime_rl.utils.net import free_port


class FakeServer:
    """Answers chat completions with random tagged text; records weight updates; reports its policy step."""

    def __init__(self, failures: int = 0, seeded: bool = False):
        self.policy, self.calls, self.requests, self.bodies = 0, [], 0, []
        self.failures = failures  # chat requests answered with HTTP 503 before the server works (-1: always)
        self.rng = random.Random(0)
        self.seeded = seeded  # answers are a function of the request's seed (like the real server)
        app = FastAPI()
        app.get("/health")(lambda: {"status": "ok"})
        app.post("/reload_weights")(self.reload)
        app.post("/update_weights")(self.update)
        app.post("/v1/chat/completions")(self.chat)
        self.port = free_port()
        self.server = uvicorn.Server(uvicorn.Config(app, port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def reload(self):
        self.policy = 0
        self.calls.append(("reload", 0))
        return {"status": "ok"}

    def update(self, body: dict):
        self.policy = body["step"]
        self.calls.append(("update", body["step"]))
        return {"status": "ok"}

    def chat(self, body: dict):
        self.requests += 1
        self.bodies.append(body)
        if self.failures:
            if self.failures > 0:
                self.failures -= 1
            return JSONResponse({"error": "overloaded"}, status_code=503)
        if self.seeded:
            self.rng = random.Random(body["seed"])
        choices = []
        for _ in range(body["n"]):
            text = self.rng.choice(["<answer>olleh</answer>", "<answer>x</answer>", "nothing"])
            ids = [self.rng.randrange(100, 200) for _ in range(self.rng.randint(1, 4))]
            logprobs = {"content": [{"logprob": -0.1 * (i + 1)} for i in range(len(ids))]}
            choices.append(
                {"message": {"role": "assistant", "content": text}, "token_ids": ids, "logprobs": logprobs,
                 "finish_reason": "stop"}
            )  # fmt: skip
        return {"prompt_token_ids": [1, 2, 3], "choices": choices, "policy_step": self.policy}

    def __enter__(self):
        self.thread.start()
        while not self.server.started:
            time.sleep(0.01)
        return self

    def __exit__(self, *exc):
        self.server.should_exit = True
        self.thread.join(5)


def fake_trainer(output_dir, max_steps, seen):
    """Consumes rollouts/step_N and publishes broadcasts/step_{N+1}, like the trainer."""
    receiver = FileSystemReceiver(output_dir, poll_interval=0.01)
    for step in range(max_steps):
        batch = receiver.receive(step, timeout=30)
        seen.append(batch)
        time.sleep(0.05)
        with stable_dir(output_dir / "broadcasts" / f"step_{step + 1}") as tmp:
            (tmp / "model.safetensors").write_bytes(b"")


def _run(tmp_path, port, max_async_level, max_steps=4, client_extra=None, **extra):
    config = OrchestratorConfig(
        output_dir=tmp_path,
        max_steps=max_steps,
        max_async_level=max_async_level,
        batch_size=6,
        rollouts_per_example=3,
        client={"base_url": [f"http://127.0.0.1:{port}/v1"], "retry_timeout": 0, **(client_extra or {})},
        **extra,
    )
    seen = []
    trainer = threading.Thread(target=fake_trainer, args=(tmp_path, max_steps, seen), daemon=True)
    trainer.start()
    asyncio.run(run(config))
    trainer.join(30)
    return seen


@pytest.mark.parametrize("max_async_level", [0, 1, 2])
def test_samples_respect_async_level(tmp_path, max_async_level):
    with FakeServer() as server:
        seen = _run(tmp_path, server.port, max_async_level)
    assert [b.step for b in seen] == [0, 1, 2, 3]
    for batch in seen:
        assert len(batch.samples) == 6
        assert all(s.policy_step >= batch.step - max_async_level for s in batch.samples)
    if max_async_level == 0:
        assert [{s.policy_step for s in b.samples} for b in seen] == [{0}, {1}, {2}, {3}]
    assert server.calls[0] == ("reload", 0)
    assert all(kind == "update" for kind, _ in server.calls[1:])
    assert server.requests == 4 * 2  # one n=3 request per group


def test_metrics_lines_groups_in_order_and_advantages(tmp_path):
    with FakeServer() as server:
        seen = _run(tmp_path, server.port, 1, max_steps=2)
    records = read_metrics(tmp_path / "metrics" / "orchestrator.jsonl")
    assert [r["step"] for r in records] == [0, 1]
    for key in ("reward/mean", "reward/reverse-text/mean", "rubric/reverse-text/lcs_reward/mean", "error/mean",
                "off_policy/max", "perf/gen_tokens_per_s", "time/wait_for_weights", "time/generate",
                "time/score", "time/write", "completion_len/mean", "is_truncated/mean"):  # fmt: skip
        assert key in records[0], key
    for batch in seen:
        ids = [s.example_id for s in batch.samples]
        assert ids[0:3] == [ids[0]] * 3 and ids[3:6] == [ids[3]] * 3  # groups stay contiguous, in sampling order
        for g in (0, 3):
            group = batch.samples[g : g + 3]
            mean = sum(s.reward for s in group) / 3
            assert [s.advantage for s in group] == pytest.approx([s.reward - mean for s in group])
    assert records[0]["reward/mean"] == pytest.approx(sum(s.reward for s in seen[0].samples) / 6)


def test_unreachable_server_fails_with_its_url(tmp_path):
    config = OrchestratorConfig(
        output_dir=tmp_path, client={"base_url": ["http://127.0.0.1:9/v1"], "health_timeout": 0.2}
    )
    with pytest.raises(Exception, match=r"inference server http://127.0.0.1:9 not healthy"):
        asyncio.run(run(config))


def test_resume_continues_the_example_sequence(tmp_path):
    """A run checkpointed at step 2 and resumed produces the batches an uninterrupted run produces (same examples)."""
    with FakeServer() as server:
        full = _run(tmp_path / "full", server.port, 0, max_steps=4)
        _run(tmp_path / "cut", server.port, 0, max_steps=2, ckpt={"interval": 1})
        assert (tmp_path / "cut/checkpoints/step_2/orchestrator/STABLE").is_file()
        resumed = _run_from(tmp_path / "cut", server.port, start=2, max_steps=4)
    assert [b.step for b in resumed] == [2, 3]
    for a, b in zip(full[2:], resumed, strict=True):
        assert [s.example_id for s in a.samples] == [s.example_id for s in b.samples]


def _run_from(output_dir, port, start, max_steps, **extra):
    ckpt = {**extra.pop("ckpt", {}), "resume_step": start}
    config = OrchestratorConfig(
        output_dir=output_dir, max_steps=max_steps, max_async_level=0, batch_size=6, rollouts_per_example=3,
        client={"base_url": [f"http://127.0.0.1:{port}/v1"], "retry_timeout": 0}, ckpt=ckpt, **extra,
    )  # fmt: skip
    seen = []

    def trainer():
        receiver = FileSystemReceiver(output_dir, poll_interval=0.01)
        for step in range(start, max_steps):
            seen.append(receiver.receive(step, timeout=30))
            with stable_dir(output_dir / "broadcasts" / f"step_{step + 1}") as tmp:
                (tmp / "model.safetensors").write_bytes(b"")

    thread = threading.Thread(target=trainer, daemon=True)
    thread.start()
    asyncio.run(run(config))
    thread.join(30)
    return seen


def test_two_servers_round_robin_and_both_updated(tmp_path):
    with FakeServer() as one, FakeServer() as two:
        config = OrchestratorConfig(
            output_dir=tmp_path, max_steps=3, max_async_level=0, batch_size=6, rollouts_per_example=3,
            client={"base_url": [f"http://127.0.0.1:{s.port}/v1" for s in (one, two)], "retry_timeout": 0},
        )  # fmt: skip
        seen = []
        trainer = threading.Thread(target=fake_trainer, args=(tmp_path, 3, seen), daemon=True)
        trainer.start()
        asyncio.run(run(config))
        trainer.join(30)
    assert one.requests == two.requests == 3  # 6 group requests, alternating
    assert one.calls == two.calls == [("reload", 0), ("update", 1), ("update", 2)]


def _checkpointed_buffers(output_dir, steps):
    return [json.loads((output_dir / f"checkpoints/step_{s}/orchestrator/state.json").read_text()) for s in steps]


def test_refill_and_difficulty_pools_resume_exactly(tmp_path):
    """With refills and difficulty pools the buffer moves with the rewards; a run resumed from its step-2
    checkpoint draws the same examples and checkpoints the same buffer state as an uninterrupted run."""
    extra = {"ckpt": {"interval": 1}, "refill_zero_advantage": True, "max_refill_groups": 4,
             "difficulty": {"easy_threshold": 0.5, "easy_fraction": 0.25, "hard_fraction": 0.25}}  # fmt: skip
    with FakeServer(seeded=True) as server:
        full = _run(tmp_path / "full", server.port, 0, max_steps=4, **extra)
        _run(tmp_path / "cut", server.port, 0, max_steps=2, **extra)
        resumed = _run_from(tmp_path / "cut", server.port, start=2, max_steps=4, **extra)
    assert [b.step for b in resumed] == [2, 3]
    for a, b in zip(full[2:], resumed, strict=True):
        assert [s.example_id for s in a.samples] == [s.example_id for s in b.samples]
        assert [s.reward for s in a.samples] == [s.reward for s in b.samples]
    assert _checkpointed_buffers(tmp_path / "full", (3, 4)) == _checkpointed_buffers(tmp_path / "cut", (3, 4))
    records = read_metrics(tmp_path / "full/metrics/orchestrator.jsonl")
    for batch in full:  # every batch is full and every group in it carries signal
        assert len(batch.samples) == 6
        for g in (0, 3):
            assert len({s.reward for s in batch.samples[g : g + 3]}) > 1
    # golden numbers of the seeded fake server: 3 refills; a hard example (all rewards 0) is drawn again by
    # hard_fraction at step 1 and leaves the hard pool
    assert [r["refill/extra_groups"] for r in records] == [1.0, 0.0, 0.0, 2.0]
    assert [(r["pool/easy"], r["pool/hard"], r["pool/normal"]) for r in records] == [
        (0.0, 1.0, 2.0), (0.0, 0.0, 4.0), (0.0, 0.0, 6.0), (0.0, 2.0, 8.0)
    ]  # fmt: skip


def test_each_steps_record_is_written_before_its_batch(tmp_path, monkeypatch):
    """Killed between the two, a resume (from a step no later than this one) discards the record and writes it
    again; the other order would lose the record of a batch the trainer trained."""
    send, recorded = FileSystemSender.send, []

    def checked_send(self, batch):
        recorded.append([r["step"] for r in read_metrics(tmp_path / "metrics" / "orchestrator.jsonl")])
        send(self, batch)

    monkeypatch.setattr(FileSystemSender, "send", checked_send)
    with FakeServer() as server:
        _run(tmp_path, server.port, 1, max_steps=3)
    assert recorded == [[0], [0, 1], [0, 1, 2]]

"""`rl` with `inference.engine = "vllm"`: three steps of the one-word example (and two with LoRA) train exactly the
batches the orchestrator wrote, with rewards recorded and the sampler's logprobs matching the trainer's (mismatch
KL)."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pytest

from prime_rl.utils.metrics import read_metrics
from prime_rl.utils.net import free_port

pytestmark = pytest.mark.vllm
REPO = Path(__file__).resolve().parents[2]
STEPS = 3


def rl_on_vllm(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    """`rl` on the one-word example with `inference.engine = "vllm"` and a free port; `args` are more CLI arguments."""
    pytest.importorskip("vllm", reason="vLLM is not installed (`make test-vllm` installs its CPU build)")
    cmd = [sys.executable, "-m", "prime_rl.rl", "@", str(REPO / "examples/one_word/rl.toml"), *args,
           "--output-dir", str(tmp_path), "--inference.engine", "vllm", "--inference.server.port", str(free_port()),
           "--health-timeout", "1500"]  # fmt: skip
    return subprocess.run(cmd, capture_output=True, text=True, timeout=3600, cwd=REPO)


def test_one_word_three_steps_on_vllm(tmp_path: Path):
    result = rl_on_vllm(tmp_path, "--max-steps", str(STEPS))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "vLLM engine ready" in (tmp_path / "logs/inference.log").read_text()
    trainer = read_metrics(tmp_path / "metrics/trainer.jsonl")
    batches = [r for r in read_metrics(tmp_path / "metrics/orchestrator.jsonl") if "batch/digest" in r]
    assert [r["step"] for r in trainer] == [r["step"] for r in batches] == list(range(STEPS))
    assert [r["batch/digest"] for r in trainer] == [r["batch/digest"] for r in batches]
    rewards = [r["reward/mean"] for r in batches]
    assert all(0.0 <= r <= 1.0 for r in rewards)
    kl = [r["mismatch_kl/mean"] for r in trainer]
    print(f"rewards {rewards}; trainer mismatch KL per step {kl}")
    assert not any(math.isnan(k) for k in kl) and abs(kl[0]) < 1e-3


def test_one_word_with_lora_on_vllm_serves_the_adapters(tmp_path: Path):
    """`[model.lora]` with the vLLM engine (eager, to start faster): two synchronous steps, the second sampled with
    the trainer's adapter of policy 1, which vLLM holds alone."""
    result = rl_on_vllm(tmp_path, "@", str(REPO / "examples/one_word/lora.toml"), "--max-steps", "2",
                        "--max-async-level", "0", "--inference.vllm.enforce-eager")  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert "registered as id 1; ids held: [1]" in (tmp_path / "logs/inference.log").read_text()
    trainer = read_metrics(tmp_path / "metrics/trainer.jsonl")
    batches = [r for r in read_metrics(tmp_path / "metrics/orchestrator.jsonl") if "batch/digest" in r]
    assert [r["batch/digest"] for r in trainer] == [r["batch/digest"] for r in batches] and len(trainer) == 2
    assert batches[1]["policy/loaded"] == 1
    rewards, kl = [r["reward/mean"] for r in batches], [r["mismatch_kl/mean"] for r in trainer]
    print(f"LoRA on vLLM: rewards {rewards}; trainer mismatch KL per step {kl}")
    assert all(0.0 <= r <= 1.0 for r in rewards) and all(abs(k) < 1e-3 for k in kl)

"""The main example end to end (`make run`): SmolLM2-135M-Instruct learns one-word answers on CPU."""

import socket
import subprocess
import sys
from pathlib import Path

import pytest

from prime_rl.utils.metrics import read_metrics

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_one_word_reward_improves(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, "-m", "prime_rl.rl", "@", str(REPO / "examples/one_word/rl.toml"),
           "--output-dir", str(tmp_path), "--inference.server.port", str(port)]  # fmt: skip
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=3600, cwd=REPO)
    assert result.returncode == 0, result.stderr[-3000:]
    rewards = [r["reward/mean"] for r in read_metrics(tmp_path / "metrics/orchestrator.jsonl")]
    assert len(rewards) == 10
    first, last = sum(rewards[:3]) / 3, sum(rewards[-3:]) / 3
    assert last >= first + 0.15, rewards

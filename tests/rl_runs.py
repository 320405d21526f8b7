"""What the integration tests that start `rl` share: the toy `count` environment they load by path, `rl` on a TOML
as a child process, and its progress read from the run's files (trained steps, child pids, the batch history)."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

from prime_rl.launcher.history import History, read_history

# Rewards that vary with the sampled text, so that advantages are not all zero even for a random model.
COUNT_ENV = """
from prime_rl.environments import Example, Rubric, SingleTurnEnv

def text_length(completion) -> float:
    return (len(completion[-1]["content"]) % 7) / 6

def load_environment():
    examples = [Example(i, [{"role": "user", "content": f"Count to {i}."}]) for i in range(40)]
    evals = [Example(100 + i, [{"role": "user", "content": f"Count to {i}."}]) for i in range(5)]
    return SingleTurnEnv("count", examples, Rubric([text_length]), eval_dataset=evals)
"""


def write_count_env(directory: Path) -> Path:
    """Writes the `count` environment (40 training, 5 eval examples) to `directory/count_env.py`; returns its path."""
    path = directory / "count_env.py"
    path.write_text(COUNT_ENV)
    return path


def start_rl(config: Path, *extra: str) -> subprocess.Popen:
    """`rl @ config *extra` in the config's directory, its stdout and stderr piped as text."""
    cmd = [sys.executable, "-m", "prime_rl.rl", "@", str(config), *extra]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=config.parent)


def trained_steps(out: Path) -> int:
    """How many steps the trainer recorded in `out/metrics/trainer.jsonl` (0 before it exists)."""
    path = out / "metrics/trainer.jsonl"
    return len(path.read_text().splitlines()) if path.is_file() else 0


def wait_trained(out: Path, steps: int, proc: subprocess.Popen, timeout: float) -> None:
    """Returns once `steps` steps are recorded; fails with `rl`'s stderr if it exits first, or after `timeout` s."""
    deadline = time.monotonic() + timeout
    while trained_steps(out) < steps:
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        assert time.monotonic() < deadline, "no progress"
        time.sleep(0.05)


def child_pids(out: Path) -> dict[str, int]:
    """The pids of the newest launch, from the `started <name> (pid N)` lines of `out/logs/rl.log`."""
    text = (out / "logs/rl.log").read_text() if (out / "logs/rl.log").is_file() else ""
    return {name: int(pid) for name, pid in re.findall(r"started (\w+) \(pid (\d+)\)", text)}


def assert_exactly_once(out: Path, max_steps: int) -> None:
    """Steps `0..max_steps-1` each trained once, in order, each on the batch the surviving orchestrator wrote for
    it."""
    assert read_history(out, max_steps) == History(lost=[], duplicated=[], unordered=[], mismatched=[])

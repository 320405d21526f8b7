"""`rl` with a teacher server it starts (`[teacher]`): teacher logprobs reach the loss, a SIGKILLed teacher stops the
run and a resume trains every batch exactly once; `teacher_tau > 0` without a teacher exits 2 before start."""

import math
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from prime_rl.launcher.history import History, read_history
from prime_rl.utils.metrics import read_metrics

MAX_STEPS = 6
ENV_MODULE = """
from prime_rl.environments import Example, Rubric, SingleTurnEnv

def text_length(completion) -> float:
    return (len(completion[-1]["content"]) % 7) / 6

def load_environment():
    examples = [Example(i, [{"role": "user", "content": f"Count to {i}."}]) for i in range(40)]
    return SingleTurnEnv("count", examples, Rubric([text_length]))
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _config(tmp_path: Path, model_dir: Path, teacher: str) -> Path:
    (tmp_path / "count_env.py").write_text(ENV_MODULE)
    path = tmp_path / "rl.toml"
    path.write_text(
        f'output_dir = "{tmp_path / "out"}"\nmax_steps = {MAX_STEPS}\nmax_async_level = 1\nseq_len = 128\n'
        f'[model]\nname = "{model_dir}"\n[ckpt]\ninterval = 1\n[inference.server]\nport = {_free_port()}\n'
        "[orchestrator]\nbatch_size = 4\nrollouts_per_example = 2\n[orchestrator.sampling]\nmax_tokens = 8\n"
        f'[[orchestrator.env]]\nid = "{tmp_path / "count_env.py"}"\n'
        "[trainer.optim]\nlr = 1e-3\n[trainer.loss]\nteacher_tau = 1.0\n"
        f"{teacher}"
    )
    return path


def _start(config: Path, *extra: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "prime_rl.rl", "@", str(config), *extra]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=config.parent)


def _trained(out: Path) -> int:
    path = out / "metrics/trainer.jsonl"
    return len(path.read_text().splitlines()) if path.is_file() else 0


def test_teacher_tau_without_a_teacher_exits_2_before_start(tmp_path, tiny_model_dir):
    config = _config(tmp_path, tiny_model_dir, teacher="")
    result = subprocess.run(
        [sys.executable, "-m", "prime_rl.rl", "@", str(config)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"rl: error: {config}: `trainer.loss.teacher_tau` = 1.0 needs a teacher: add a `[teacher]` table (rl starts "
        "that server) or `[orchestrator.teacher]` (a running server)"
    ]
    assert not (tmp_path / "out").exists()


def test_rl_with_a_teacher_then_sigkill_of_the_teacher_and_resume_exactly_once(tmp_path, tiny_model_dir):
    from conftest import build_tiny_model_dir

    (tmp_path / "teacher_model").mkdir()
    teacher_dir = build_tiny_model_dir(tmp_path / "teacher_model", seed=1)
    teacher = f'[teacher]\nserver = {{ port = {_free_port()} }}\nmodel = {{ name = "{teacher_dir}" }}\n'
    config = _config(tmp_path, tiny_model_dir, teacher)
    out = tmp_path / "out"
    proc = _start(config)
    deadline = time.monotonic() + 600
    while _trained(out) < 2:
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        assert time.monotonic() < deadline, "no progress"
        time.sleep(0.05)
    pids = dict(re.findall(r"started (\w+) \(pid (\d+)\)", (out / "logs/rl.log").read_text()))
    os.kill(int(pids["teacher"]), signal.SIGKILL)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 1 and "teacher exited with code -9" in stderr, stderr[-3000:]

    final = _start(config, "--ckpt.resume-step", "-1")
    _, stderr = final.communicate(timeout=900)  # 5 minutes were not enough under a load average of 20
    assert final.returncode == 0, stderr[-3000:]
    assert read_history(out, MAX_STEPS) == History(lost=[], duplicated=[], unordered=[], mismatched=[])
    assert (out / "configs/teacher.toml").is_file() and "engine ready" in (out / "logs/teacher.log").read_text()
    trainer = read_metrics(out / "metrics/trainer.jsonl")
    orchestrator = [r for r in read_metrics(out / "metrics/orchestrator.jsonl") if "batch/digest" in r]
    # Sampled estimates of the KL between two near-uniform random models: small, of either sign, never exactly 0.
    assert all(math.isfinite(r["teacher_kl/mean"]) and r["teacher_kl/mean"] != 0 for r in trainer)
    assert all(math.isfinite(r["teacher/kl"]) and r["teacher/kl"] != 0 and r["time/teacher"] > 0 for r in orchestrator)
    # Step 0 is on-policy (base weights on both sides), so both sides estimate the same KL from the same tokens.
    assert abs(trainer[0]["teacher_kl/mean"] - orchestrator[0]["teacher/kl"]) < 0.05

"""`rl` with a teacher server it starts (`[teacher]`): teacher logprobs reach the loss, a SIGKILLed teacher stops the
run and a resume trains every batch exactly once; `teacher_tau > 0` without a teacher exits 2 before start."""

import math
import os
import signal
import subprocess
import sys
from pathlib import Path

from prime_rl.utils.metrics import read_metrics
from prime_rl.utils.net import free_port
from rl_runs import assert_exactly_once, child_pids, start_rl, wait_trained, write_count_env

MAX_STEPS = 6


def _config(tmp_path: Path, model_dir: Path, teacher: str) -> Path:
    env = write_count_env(tmp_path)
    path = tmp_path / "rl.toml"
    path.write_text(
        f'output_dir = "{tmp_path / "out"}"\nmax_steps = {MAX_STEPS}\nmax_async_level = 1\nseq_len = 128\n'
        f'[model]\nname = "{model_dir}"\n[ckpt]\ninterval = 1\n[inference.server]\nport = {free_port()}\n'
        "[orchestrator]\nbatch_size = 4\nrollouts_per_example = 2\n[orchestrator.sampling]\nmax_tokens = 8\n"
        f'[[orchestrator.env]]\nid = "{env}"\n'
        "[trainer.optim]\nlr = 1e-3\n[trainer.loss]\nteacher_tau = 1.0\n"
        f"{teacher}"
    )
    return path


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
    teacher = f'[teacher]\nserver = {{ port = {free_port()} }}\nmodel = {{ name = "{teacher_dir}" }}\n'
    config = _config(tmp_path, tiny_model_dir, teacher)
    out = tmp_path / "out"
    proc = start_rl(config)
    wait_trained(out, 2, proc, timeout=600)
    os.kill(child_pids(out)["teacher"], signal.SIGKILL)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 1 and "teacher exited with code -9" in stderr, stderr[-3000:]

    final = start_rl(config, "--ckpt.resume-step", "-1")
    _, stderr = final.communicate(timeout=900)  # 5 minutes were not enough under a load average of 20
    assert final.returncode == 0, stderr[-3000:]
    assert_exactly_once(out, MAX_STEPS)
    assert (out / "configs/teacher.toml").is_file() and "engine ready" in (out / "logs/teacher.log").read_text()
    trainer = read_metrics(out / "metrics/trainer.jsonl")
    orchestrator = [r for r in read_metrics(out / "metrics/orchestrator.jsonl") if "batch/digest" in r]
    # Sampled estimates of the KL between two near-uniform random models: small, of either sign, never exactly 0.
    assert all(math.isfinite(r["teacher_kl/mean"]) and r["teacher_kl/mean"] != 0 for r in trainer)
    assert all(math.isfinite(r["teacher/kl"]) and r["teacher/kl"] != 0 and r["time/teacher"] > 0 for r in orchestrator)
    # Step 0 is on-policy (base weights on both sides), so both sides estimate the same KL from the same tokens.
    assert abs(trainer[0]["teacher_kl/mean"] - orchestrator[0]["teacher/kl"]) < 0.05

"""Resume with exactly-once batches: SIGKILL the trainer, then the orchestrator, then the inference server of one
tiny-model `rl` run at a random moment, resume each time with `--ckpt.resume-step -1`, and check the history.

One run serves every assertion (the default suite stays lean): contiguous steps, no batch trained twice, each step
trained the batch the surviving orchestrator wrote, final step count, and `[orchestrator.eval]` metrics.
"""

import os
import random
import signal
import time
from pathlib import Path

from prime_rl.utils.metrics import read_metrics
from prime_rl.utils.net import free_port
from rl_runs import assert_exactly_once, child_pids, start_rl, trained_steps, wait_trained, write_count_env

MAX_STEPS = 16


def _config(tmp_path: Path, model_dir: Path) -> Path:
    env = f'id = "{write_count_env(tmp_path)}"\n'
    path = tmp_path / "rl.toml"
    path.write_text(
        f'output_dir = "{tmp_path / "out"}"\nmax_steps = {MAX_STEPS}\nmax_async_level = 1\nseq_len = 128\n'
        f'[model]\nname = "{model_dir}"\n[ckpt]\ninterval = 1\n[inference.server]\nport = {free_port()}\n'
        "[orchestrator]\nbatch_size = 4\nrollouts_per_example = 2\n[orchestrator.sampling]\nmax_tokens = 8\n"
        f"[[orchestrator.env]]\n{env}"
        "[orchestrator.eval]\ninterval = 4\nnum_examples = 2\n[orchestrator.eval.sampling]\nmax_tokens = 4\n"
        f"[[orchestrator.eval.env]]\n{env}"
        "[trainer.optim]\nlr = 1e-3\n"
    )
    return path


def _kill_during(config: Path, victim: str, rng: random.Random, *extra: str) -> str:
    """Starts `rl`, SIGKILLs `victim` once a random number (2 or 3) of new steps were trained (+ a random delay)."""
    out = config.parent / "out"
    before = trained_steps(out)
    # The record of step N is written before the checkpoint of N+1: two new records mean a new checkpoint.
    target = before + rng.randint(2, 3)
    proc = start_rl(config, *extra)
    wait_trained(out, target, proc, timeout=240)
    # Short: on a quiet machine a tiny-model step takes well under a second, and every kill must land before the
    # run's last step, or the next resume has nothing left to do.
    time.sleep(rng.uniform(0.0, 0.15))
    os.kill(child_pids(out)[victim], signal.SIGKILL)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 1, stderr[-3000:]
    assert f"{victim} exited with code -9" in stderr
    return stderr


def test_sigkill_each_process_then_resume_trains_every_batch_exactly_once(tmp_path, tiny_model_dir):
    seed = random.randrange(2**32)
    print(f"kill-moment seed: {seed}")
    rng = random.Random(seed)
    config = _config(tmp_path, tiny_model_dir)
    out = tmp_path / "out"

    stderr = _kill_during(config, "trainer", rng)
    assert "with `--ckpt.resume-step -1`" in stderr
    _kill_during(config, "orchestrator", rng, "--ckpt.resume-step", "-1")
    _kill_during(config, "inference", rng, "--ckpt.resume-step", "-1")
    final = start_rl(config, "--ckpt.resume-step", "-1")
    _, stderr = final.communicate(timeout=300)
    assert final.returncode == 0, stderr[-3000:]

    assert_exactly_once(out, MAX_STEPS)
    assert (out / f"checkpoints/step_{MAX_STEPS}/trainer/STABLE").is_file()
    assert (out / f"weights/step_{MAX_STEPS}/config.json").is_file()
    assert not list((out / "rollouts").glob(f"step_{MAX_STEPS}*"))

    orchestrator = read_metrics(out / "metrics/orchestrator.jsonl")
    # [orchestrator.eval] interval 4: own records after the batches of steps 3, 7, 11 and 15; the last one evaluates
    # the final policy
    evals = [r for r in orchestrator if "eval/policy" in r]
    assert [r["step"] for r in evals] == [3, 7, 11, 15]
    assert evals[-1]["eval/policy"] == MAX_STEPS
    for record in evals:
        assert record["eval/count/num_examples"] == 2 and 0.0 <= record["eval/count/avg@1"] <= 1.0

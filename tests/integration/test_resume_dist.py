"""Resume with exactly-once batches when one rank of a 2-rank trainer (`trainer.num_processes = 2`) is SIGKILLed: `rl`
exits 1 with no process of the run left alive, and `--ckpt.resume-step -1` trains every batch exactly once."""

import os
import random
import signal
from pathlib import Path

from test_resume import _config

from prime_rl.utils.lifecycle import alive_after
from rl_runs import assert_exactly_once, child_pids, start_rl, wait_trained

MAX_STEPS = 4
ARGS = ("--max-steps", str(MAX_STEPS), "--trainer.num-processes", "2")


def _ranks(torchrun: int) -> list[int]:
    """The trainer ranks: children of the torchrun process (from /proc, any of its threads may have forked them)."""
    tasks = Path(f"/proc/{torchrun}/task")
    return sorted(int(pid) for task in tasks.iterdir() for pid in (task / "children").read_text().split())


def test_sigkill_of_a_trainer_rank_stops_the_run_and_resume_trains_exactly_once(tmp_path, tiny_model_dir):
    seed = random.randrange(2**32)
    print(f"kill seed: {seed}")
    rng = random.Random(seed)
    config, out = _config(tmp_path, tiny_model_dir), tmp_path / "out"
    proc = start_rl(config, *ARGS)
    wait_trained(out, rng.randint(2, 3), proc, timeout=120)
    children = child_pids(out)
    ranks = _ranks(children["trainer"])
    assert len(ranks) == 2
    os.kill(rng.choice(ranks), signal.SIGKILL)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 1, stderr[-3000:]
    assert "trainer exited with code 1" in stderr and "with `--ckpt.resume-step -1`" in stderr
    assert alive_after([*children.values(), *ranks], 5.0) == []

    resumed = start_rl(config, *ARGS, "--ckpt.resume-step", "-1")
    _, stderr = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, stderr[-3000:]
    assert_exactly_once(out, MAX_STEPS)

"""`rl` with `[wandb]` offline: trainer and orchestrator write the same W&B run id, each record on its training step."""

import os
import subprocess
import sys

from test_rl import REPO, _config

from prime_rl.utils.metrics import read_metrics
from wandb_files import offline_run_dirs, read_offline_run


def test_rl_logs_trainer_and_orchestrator_to_one_offline_wandb_run(tmp_path, tiny_model_dir, monkeypatch):
    monkeypatch.setenv("WANDB_SILENT", "true")
    wandb = '[wandb]\nproject = "prime-rl-test"\nid = "rltest01"\noffline = true\nsamples_interval = 2\n'
    config = _config(tmp_path, tiny_model_dir, "")
    config.write_text(config.read_text() + wandb)
    # This tree's sources first (the subprocess inherits PYTHONPATH), as for every test that starts `rl`.
    paths = [os.environ.get("PYTHONPATH", ""), str(REPO / "examples" / "custom_algorithms")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in paths if p)}
    cmd = [sys.executable, "-m", "prime_rl.rl", "@", str(config)]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    out = tmp_path / "out"
    for process, key in (("trainer", "loss"), ("orchestrator", "reward/mean")):
        (run_dir,) = offline_run_dirs(out / "wandb" / process)
        run = read_offline_run(run_dir)
        assert (run["id"], run["project"]) == ("rltest01", "prime-rl-test")
        rows = [r for r in run["history"] if f"{process}/{key}" in r]
        records = read_metrics(out / "metrics" / f"{process}.jsonl")
        assert [r["step"] for r in rows] == [r["step"] for r in records] == [0, 1, 2]
        assert [r[f"{process}/{key}"] for r in rows] == [r[key] for r in records]
    orchestrator = read_offline_run(offline_run_dirs(out / "wandb" / "orchestrator")[0])
    assert [step for step, _ in orchestrator["tables"]["orchestrator/samples"]] == [0, 2]

"""`rl` end to end on a tiny random model: three real processes, custom loss and advantage by import path, LoRA."""

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from prime_rl.transport.filesystem import FileSystemReceiver
from prime_rl.utils.metrics import read_metrics
from prime_rl.utils.net import free_port
from rl_runs import write_count_env

REPO = Path(__file__).resolve().parents[2]

BAD_LOSS = """
def exploding_loss(inputs):
    raise RuntimeError("boom from exploding_loss")
"""


def _config(tmp_path: Path, model_dir: Path, loss: str, advantage: str = "", async_level: int = 1) -> Path:
    env = write_count_env(tmp_path)
    path = tmp_path / "rl.toml"
    path.write_text(
        f'output_dir = "{tmp_path / "out"}"\nmax_steps = 3\nmax_async_level = {async_level}\nseq_len = 256\n'
        f'[model]\nname = "{model_dir}"\n[inference.server]\nport = {free_port()}\n'
        "[orchestrator]\nbatch_size = 8\nrollouts_per_example = 4\n[orchestrator.sampling]\nmax_tokens = 12\n"
        f'[[orchestrator.env]]\nid = "{env}"\n{advantage}{loss}'
        "[trainer.optim]\nlr = 1e-3\n"
    )
    return path


def _env() -> dict[str, str]:
    """The example plug-ins importable, and the tree under test first (an inherited PYTHONPATH is kept)."""
    paths = [str(REPO / "examples" / "custom_algorithms"), os.environ.get("PYTHONPATH")]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, paths))}


def _rl(config: Path, timeout: float = 400) -> subprocess.CompletedProcess:
    env = _env()
    cmd = [sys.executable, "-m", "prime_rl.rl", "@", str(config)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, cwd=config.parent)


def _expected_normalized(rewards: list[float]) -> list[float]:
    r = torch.tensor(rewards, dtype=torch.float64)
    return ((r - r.mean()) / (r.std() + 1e-8)).tolist()


def test_rl_three_steps_custom_loss_and_advantage(tmp_path, tiny_model_dir):
    loss = '[trainer.loss]\ntype = "custom"\nimport_path = "my_module.ppo_clip_loss"\nkwargs = { clip_eps = 0.2 }\n'
    advantage = (
        '[orchestrator.advantage]\ntype = "custom"\nimport_path = "my_module.normalized_advantage"\n'
        "kwargs = { eps = 1e-8 }\n"
    )
    result = _rl(_config(tmp_path, tiny_model_dir, loss, advantage))
    assert result.returncode == 0, result.stderr[-3000:]
    out = tmp_path / "out"
    for name in ("configs/inference.toml", "configs/orchestrator.toml", "configs/trainer.toml", "logs/rl.log",
                 "logs/inference.log", "logs/orchestrator.log", "logs/trainer.log", "broadcasts/step_3/STABLE",
                 "broadcasts/step_3/model.safetensors", "weights/step_3/config.json"):  # fmt: skip
        assert (out / name).is_file(), name
    for step in range(3):
        assert (out / f"rollouts/step_{step}/STABLE").is_file()
    assert "trained 3/3" in result.stdout

    orchestrator = read_metrics(out / "metrics/orchestrator.jsonl")
    trainer = read_metrics(out / "metrics/trainer.jsonl")
    assert [r["step"] for r in orchestrator] == [0, 1, 2] and [r["step"] for r in trainer] == [0, 1, 2]
    assert all("clip_frac/mean" in r for r in trainer)  # the custom loss's metric: it was the loss used
    assert not any("geo_seq_ratio/mean" in r for r in trainer)  # ... and not the default loss
    assert "rubric/count/text_length/mean" in orchestrator[0]

    receiver = FileSystemReceiver(out)
    policies = []
    for step in range(3):
        samples = receiver.receive(step, timeout=1).samples
        assert len(samples) == 8
        assert all(s.policy_step >= step - 1 for s in samples)
        policies += [s.policy_step for s in samples]
        for g in range(0, 8, 4):  # groups are contiguous; advantages are the custom normalization of rewards
            group = samples[g : g + 4]
            assert len({s.example_id for s in group}) == 1
            expected = _expected_normalized([s.reward for s in group])
            assert [s.advantage for s in group] == pytest.approx(expected, abs=1e-6)
    assert max(policies) >= 1  # the server reported a newer policy after /update_weights
    assert orchestrator[2]["policy/loaded"] >= 1


def test_rl_failing_process_stops_all_and_exits_nonzero(tmp_path, tiny_model_dir):
    (tmp_path / "bad_loss.py").write_text(BAD_LOSS)
    loss = '[trainer.loss]\ntype = "custom"\nimport_path = "bad_loss.exploding_loss"\n'
    result = _rl(_config(tmp_path, tiny_model_dir, loss))
    assert result.returncode == 1
    assert "trainer exited with code 1; last lines of" in result.stderr
    assert "boom from exploding_loss" in result.stderr


def test_rl_ctrl_c_stops_every_process(tmp_path, tiny_model_dir):
    config = _config(tmp_path, tiny_model_dir, "")
    env = _env()
    cmd = [sys.executable, "-m", "prime_rl.rl", "@", str(config), "--max-steps", "1000"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path)
    log = tmp_path / "out/logs/rl.log"
    deadline = time.monotonic() + 120
    while "started orchestrator" not in (log.read_text() if log.is_file() else ""):
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[1][-2000:]
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr[-2000:]
    pids = [int(m) for m in re.findall(r"\(pid (\d+)\)", log.read_text())]
    assert len(pids) == 3
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def test_rl_two_trainer_ranks(tmp_path, tiny_model_dir):
    result = _rl(_config(tmp_path, tiny_model_dir, "[trainer]\nnum_processes = 2\n"))
    assert result.returncode == 0, result.stderr[-3000:]
    out = tmp_path / "out"
    assert "sharded over 2 ranks" in (out / "logs/trainer.log").read_text()
    assert [r["step"] for r in read_metrics(out / "metrics/trainer.jsonl")] == [0, 1, 2]  # rank 0 alone writes
    assert (out / "broadcasts/step_3/STABLE").is_file() and (out / "weights/step_3/config.json").is_file()
    assert "trained 3/3" in result.stdout


RANK_LOSS = """
import os, time
from pathlib import Path
from prime_rl.trainer.rl.loss import LossOutputs

def fails_on_rank_1(inputs):
    if os.environ["RANK"] == "1" and Path("{out}/broadcasts/step_1/STABLE").exists():
        Path("{out}/raised_at").write_text(str(time.time()))
        raise RuntimeError("boom from rank 1 at step 1")
    return LossOutputs(loss=-inputs.trainer_logprobs[inputs.loss_mask].sum(), metrics={{}})
"""


def test_rl_failing_trainer_rank_stops_the_run_within_a_minute(tmp_path, tiny_model_dir):
    (tmp_path / "rank_loss.py").write_text(RANK_LOSS.format(out=tmp_path / "out"))
    # Without shared prompts the 8 samples fill 2 micro-batches, one per rank, so rank 1 calls the loss.
    loss = "[trainer]\nnum_processes = 2\nshare_prompts = false\n"
    loss += '[trainer.loss]\ntype = "custom"\nimport_path = "rank_loss.fails_on_rank_1"\n'
    result = _rl(_config(tmp_path, tiny_model_dir, loss))
    ended = time.time()
    assert result.returncode == 1
    assert ended - float((tmp_path / "out/raised_at").read_text()) < 60
    assert "trainer exited with code 1; last lines of" in result.stderr
    assert "boom from rank 1 at step 1" in result.stderr
    assert "boom from rank 1 at step 1" in (tmp_path / "out/logs/trainer.log").read_text()


def test_rl_with_lora_serves_the_trainers_adapter(tmp_path, tiny_model_dir):
    """The server samples with the adapter the trainer broadcast: the trainer's logprobs match the rollouts'."""
    result = _rl(_config(tmp_path, tiny_model_dir, "", "[model.lora]\nrank = 4\n", async_level=0))
    assert result.returncode == 0, result.stderr[-3000:]
    out = tmp_path / "out"
    assert sorted(p.name for p in (out / "broadcasts/step_3").iterdir()) == [
        "STABLE", "adapter_config.json", "adapter_model.safetensors"
    ]  # fmt: skip
    adapter = load_file(out / "weights/step_3/adapter_model.safetensors")
    assert len(adapter) == 28 and all(torch.count_nonzero(t) for t in adapter.values())  # every B moved from 0
    trainer = read_metrics(out / "metrics/trainer.jsonl")
    orchestrator = read_metrics(out / "metrics/orchestrator.jsonl")
    assert [r["step"] for r in trainer] == [0, 1, 2] and orchestrator[2]["policy/loaded"] == 2
    # Steps 1 and 2 were sampled with the merged adapter of policies 1 and 2: the trainer (base + adapter, unmerged)
    # computes the same logprobs up to float32 rounding.
    for record in trainer[1:]:
        assert record["mismatch_kl/max"] < 1e-6, record

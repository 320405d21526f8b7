"""The run directory: every path, the complete-step scans (STABLE only), the resume step and the discard rule."""

from __future__ import annotations

import pytest

from prime_rl.launcher.config import RLConfig
from prime_rl.launcher.launch import prepare_output_dir
from prime_rl.run_dir import ResumeError, RunDir, keep_last, step_dirs
from prime_rl.utils.fs import stable_dir


def _complete(path):
    with stable_dir(path):
        pass


def _ckpt(run: RunDir, step: int, *parts: str):
    for part in parts:
        _complete(run.checkpoint(step, part))


def test_paths(tmp_path):
    run = RunDir(str(tmp_path))
    assert run.lock == tmp_path / "rl.lock"
    assert run.config("trainer") == tmp_path / "configs" / "trainer.toml"
    assert run.log("inference") == tmp_path / "logs" / "inference.log"
    assert run.metrics("orchestrator") == tmp_path / "metrics" / "orchestrator.jsonl"
    assert run.discarded_metrics == tmp_path / "metrics" / "discarded.jsonl"
    assert run.plot == tmp_path / "metrics" / "plot.png"
    assert run.rollout(3) == tmp_path / "rollouts" / "step_3"
    assert run.broadcast(4) == tmp_path / "broadcasts" / "step_4"
    assert run.checkpoint(5, "trainer") == tmp_path / "checkpoints" / "step_5" / "trainer"
    assert run.checkpoint(5, "orchestrator") == tmp_path / "checkpoints" / "step_5" / "orchestrator"
    assert run.export(6) == tmp_path / "weights" / "step_6"
    assert run.eval_results == tmp_path / "eval" / "results.json"
    assert run.eval_server(".log") == tmp_path / "eval" / "inference.log"


def test_scans_count_only_stable_step_dirs(tmp_path):
    run = RunDir(tmp_path)
    for step in (1, 3):
        _complete(run.broadcast(step))
    run.broadcast(7).mkdir()  # killed before STABLE
    (run.broadcasts / ".step_9.tmp-0123abcd").mkdir()
    (run.broadcasts / "step_x").mkdir()
    assert step_dirs(run.broadcasts) == {1: run.broadcast(1), 3: run.broadcast(3)}
    assert sorted(step_dirs(run.broadcasts, stable_only=False)) == [1, 3, 7]
    assert run.latest_broadcast() == 3
    assert RunDir(tmp_path / "none").latest_broadcast() is None

    _ckpt(run, 2, "trainer", "orchestrator")
    _ckpt(run, 4, "orchestrator")
    run.checkpoint(4, "trainer").mkdir()
    assert run.checkpoint_steps("trainer") == [2]
    assert run.checkpoint_steps("orchestrator") == [2, 4]

    keep_last(run.broadcasts, 1, protect={1})
    assert sorted(step_dirs(run.broadcasts, stable_only=False)) == [1, 7]


def test_resume_step(tmp_path):
    run = RunDir(tmp_path)
    assert run.resume_step(None) is None
    with pytest.raises(ResumeError, match=r"^`ckpt.resume_step` = -1 but .*checkpoints holds no complete trainer"):
        run.resume_step(-1)
    with pytest.raises(ResumeError, match=r"= 2: no complete trainer checkpoint .*step_2/trainer \(complete: none\)$"):
        run.resume_step(2)
    _ckpt(run, 2, "trainer", "orchestrator")
    _ckpt(run, 4, "trainer", "orchestrator")
    _ckpt(run, 6, "orchestrator")  # the orchestrator runs ahead of the trainer
    assert run.resume_step(-1) == 4 == run.resume_step(-1, ("orchestrator",)) == run.resume_step(-1, ("trainer",))
    assert run.resume_step(2) == 2
    assert run.resume_step(6, ("orchestrator",)) == 6
    with pytest.raises(
        ResumeError, match=r"= 6: no complete trainer checkpoint .*step_6/trainer \(complete: \[2, 4\]\)"
    ):
        run.resume_step(6)
    _ckpt(run, 8, "trainer")
    with pytest.raises(ResumeError, match=r"= -1: no complete orchestrator checkpoint .*step_8/orchestrator"):
        run.resume_step(-1)
    assert run.resume_step(-1, ("trainer",)) == 8
    # orchestrator checkpoints alone (the trainer checkpoints elsewhere): its own latest
    alone = RunDir(tmp_path / "alone")
    _ckpt(alone, 3, "orchestrator")
    assert alone.resume_step(-1, ("orchestrator",)) == 3


def test_prune_keeps_what_a_resume_needs(tmp_path):
    run = RunDir(tmp_path)
    for step in (1, 2, 3):
        _ckpt(run, step, "trainer", "orchestrator")
    _ckpt(run, 4, "orchestrator")
    run.prune_checkpoints("trainer", None)
    assert run.checkpoint_steps("trainer") == [1, 2, 3]
    run.prune_checkpoints("orchestrator", 1)
    assert run.checkpoint_steps("orchestrator") == [3, 4]  # 3 is the trainer's latest
    run.prune_checkpoints("trainer", 1)
    assert run.checkpoint_steps("trainer") == [3]
    assert sorted(p.name for p in run.checkpoints.iterdir()) == ["step_3", "step_4"]


def test_discard_rule_and_stale_temp_dirs(tmp_path):
    run = RunDir(tmp_path)
    for step in range(6):
        _complete(run.rollout(step))
        _complete(run.broadcast(step + 1))
    for step in (2, 4, 6):
        _ckpt(run, step, "trainer", "orchestrator")
    stale = [
        run.broadcasts / ".step_3.tmp-0123abcd",  # SIGKILL during a broadcast: a full weight copy
        run.weights / ".step_4.tmp-89abcdef",
        run.checkpoints / "step_4" / ".trainer.tmp-deadbeef",
        run.metrics_dir / ".trainer.jsonl.tmp-00000000",
    ]
    for path in stale[:-1]:
        path.mkdir(parents=True)
    run.metrics_dir.mkdir()
    stale[-1].write_text("{")
    keep = run.weights / ".not-a-temp"
    keep.write_text("")

    deleted = run.discard_after(4)
    assert sorted(step_dirs(run.rollouts)) == [0, 1, 2, 3]
    assert sorted(step_dirs(run.broadcasts)) == [1, 2, 3, 4]
    assert run.checkpoint_steps("trainer") == [2, 4]
    assert len(deleted) == 2 + 2 + 1
    assert sorted(run.remove_temp()) == sorted(stale)
    assert not any(p.exists() for p in stale) and keep.is_file()
    assert run.checkpoint_steps("orchestrator") == [2, 4]


def test_rl_removes_stale_temp_dirs_on_resume_and_fresh_start(tmp_path):
    run = RunDir(tmp_path)
    _ckpt(run, 2, "trainer", "orchestrator")
    temp = run.checkpoints / "step_2" / ".trainer.tmp-0123abcd"
    temp.mkdir()
    (run.weights / ".step_2.tmp-0123abcd").mkdir(parents=True)
    _complete(run.rollout(2))
    prepare_output_dir(RLConfig(output_dir=tmp_path, ckpt={"resume_step": 2}), resume_step=2)
    assert not temp.exists() and not any(run.weights.iterdir()) and not run.rollout(2).exists()
    assert run.checkpoint_steps("trainer") == [2] and run.configs.is_dir() and run.logs.is_dir()

    (run.weights / ".step_3.tmp-0123abcd").mkdir()
    prepare_output_dir(RLConfig(output_dir=tmp_path, clean=False))
    assert not any(run.weights.iterdir()) and run.checkpoint_steps("trainer") == [2]

import pytest

from prime_rl.orchestrator.ckpt import load_ckpt, save_ckpt
from prime_rl.run_dir import RunDir

ORCH = ("orchestrator",)


def test_save_load_and_resolve(tmp_path):
    run = RunDir(tmp_path)
    save_ckpt(tmp_path, 2, {"buffer": {"x": 1}})
    save_ckpt(tmp_path, 4, {"buffer": {"x": 2}})
    (tmp_path / "checkpoints" / "step_6" / "orchestrator").mkdir(parents=True)  # killed mid-write: no STABLE
    assert run.checkpoint_steps("orchestrator") == [2, 4]
    assert run.resume_step(None, ORCH) is None
    assert run.resume_step(-1, ORCH) == 4
    assert run.resume_step(2, ORCH) == 2
    assert load_ckpt(tmp_path, 2) == {"buffer": {"x": 1}, "step": 2}
    with pytest.raises(FileNotFoundError, match=r"step_6/orchestrator .*\(complete: \[2, 4\]\)"):
        run.resume_step(6, ORCH)
    with pytest.raises(FileNotFoundError, match="missing or incomplete"):
        load_ckpt(tmp_path, 6)


def test_latest_without_checkpoint_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no complete orchestrator checkpoint"):
        RunDir(tmp_path).resume_step(-1, ORCH)


def test_latest_follows_the_trainer(tmp_path):
    for step in (5, 10):
        save_ckpt(tmp_path, step, {})
    # the orchestrator runs ahead: it saved step 10 before the trainer finished step 9
    trainer = tmp_path / "checkpoints" / "step_5" / "trainer"
    trainer.mkdir()
    (trainer / "STABLE").touch()
    assert RunDir(tmp_path).resume_step(-1, ORCH) == 5


def test_keep_last_prunes_older_checkpoints(tmp_path):
    for step in (1, 2, 3):
        save_ckpt(tmp_path, step, {}, keep_last=2)
    assert RunDir(tmp_path).checkpoint_steps("orchestrator") == [2, 3]
    assert not RunDir(tmp_path).checkpoint(1, "orchestrator").exists()

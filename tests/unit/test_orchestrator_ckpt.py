import pytest

from prime_rl.orchestrator.ckpt import (
    complete_ckpt_steps,
    load_ckpt,
    orchestrator_ckpt_dir,
    resolve_resume_step,
    save_ckpt,
)


def test_save_load_and_resolve(tmp_path):
    save_ckpt(tmp_path, 2, {"buffer": {"x": 1}})
    save_ckpt(tmp_path, 4, {"buffer": {"x": 2}})
    (tmp_path / "checkpoints" / "step_6" / "orchestrator").mkdir(parents=True)  # killed mid-write: no STABLE
    assert complete_ckpt_steps(tmp_path) == [2, 4]
    assert resolve_resume_step(tmp_path, None) is None
    assert resolve_resume_step(tmp_path, -1) == 4
    assert resolve_resume_step(tmp_path, 2) == 2
    assert load_ckpt(tmp_path, 2) == {"buffer": {"x": 1}, "step": 2}
    with pytest.raises(FileNotFoundError, match=r"step_6/orchestrator .*\(complete: \[2, 4\]\)"):
        resolve_resume_step(tmp_path, 6)
    with pytest.raises(FileNotFoundError, match="missing or incomplete"):
        load_ckpt(tmp_path, 6)


def test_latest_without_checkpoint_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no complete orchestrator checkpoint"):
        resolve_resume_step(tmp_path, -1)


def test_latest_follows_the_trainer(tmp_path):
    for step in (5, 10):
        save_ckpt(tmp_path, step, {})
    # the orchestrator runs ahead: it saved step 10 before the trainer finished step 9
    trainer = tmp_path / "checkpoints" / "step_5" / "trainer"
    trainer.mkdir()
    (trainer / "STABLE").touch()
    assert resolve_resume_step(tmp_path, -1) == 5


def test_keep_last_prunes_older_checkpoints(tmp_path):
    for step in (1, 2, 3):
        save_ckpt(tmp_path, step, {}, keep_last=2)
    assert complete_ckpt_steps(tmp_path) == [2, 3]
    assert not orchestrator_ckpt_dir(tmp_path, 1).exists()

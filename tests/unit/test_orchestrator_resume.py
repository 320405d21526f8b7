"""The resume rule: one step for both processes (the trainer's checkpoints decide), stale files of the lost part of
the run discarded, metrics rewound, and orchestrator checkpoints the trainer may still need never pruned."""

import json

import pytest

from prime_rl.launcher.config import RLConfig
from prime_rl.launcher.resume import latest_resumable, pin_resume_step
from prime_rl.orchestrator.ckpt import is_ckpt_step, save_ckpt
from prime_rl.run_dir import ResumeError, RunDir
from prime_rl.transport.types import TrainingBatch, TrainingSample, batch_digest
from prime_rl.utils.config import ConfigError
from prime_rl.utils.fs import stable_dir


def _trainer_ckpt(root, step):
    with stable_dir(root / "checkpoints" / f"step_{step}" / "trainer"):
        pass


def test_resolve_follows_the_trainer_and_needs_the_orchestrator(tmp_path):
    for step in (2, 4, 6):
        save_ckpt(tmp_path, step, {"buffer": {}})
    _trainer_ckpt(tmp_path, 2)
    _trainer_ckpt(tmp_path, 4)
    (tmp_path / "checkpoints/step_5/trainer").mkdir(parents=True)  # killed mid-write: no STABLE
    run = RunDir(tmp_path)
    assert run.resume_step(-1) == 4 == latest_resumable(tmp_path)
    assert run.resume_step(2) == 2
    with pytest.raises(ResumeError, match=r"`ckpt.resume_step` = 6: no complete trainer checkpoint .*\[2, 4\]"):
        run.resume_step(6)
    _trainer_ckpt(tmp_path, 8)
    with pytest.raises(ResumeError, match=r"no complete orchestrator checkpoint .*step_8/orchestrator"):
        run.resume_step(-1)
    assert latest_resumable(tmp_path / "empty") is None
    config = RLConfig(output_dir=tmp_path, ckpt={"resume_step": 6})
    with pytest.raises(ConfigError, match=r"`ckpt.resume_step` = 6: no complete trainer checkpoint"):
        pin_resume_step(config)


def test_pin_resume_step_writes_the_resolved_step_into_both(tmp_path):
    save_ckpt(tmp_path, 3, {"buffer": {}})
    _trainer_ckpt(tmp_path, 3)
    config = RLConfig(output_dir=tmp_path, ckpt={"resume_step": -1})
    assert pin_resume_step(config) == 3
    assert config.trainer.ckpt.resume_step == config.orchestrator.ckpt.resume_step == 3
    assert pin_resume_step(RLConfig(output_dir=tmp_path)) is None


def test_discard_after_removes_the_lost_part_of_the_run(tmp_path):
    for kind, steps in (("rollouts", range(6)), ("broadcasts", range(1, 7)), ("checkpoints", (2, 4, 6))):
        for step in steps:
            (tmp_path / kind / f"step_{step}").mkdir(parents=True)
    (tmp_path / "rollouts" / ".step_7.tmp-0123abcd").mkdir()  # a writer's temp dir is not a step dir
    deleted = RunDir(tmp_path).discard_after(4)
    assert sorted(p.name for p in (tmp_path / "rollouts").iterdir()) == [
        ".step_7.tmp-0123abcd",
        *(f"step_{s}" for s in range(4)),
    ]
    assert sorted(p.name for p in (tmp_path / "broadcasts").iterdir()) == [f"step_{s}" for s in range(1, 5)]
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["step_2", "step_4"]
    assert len(deleted) == 2 + 2 + 1


def test_rewind_metrics_moves_later_records_and_drops_a_torn_line(tmp_path):
    run = RunDir(tmp_path)
    run.metrics_dir.mkdir()
    run.metrics("trainer").write_text("".join(json.dumps({"step": s, "loss": s}) + "\n" for s in range(5)) + '{"st')
    run.metrics("orchestrator").write_text('{"step": 0}\n{"step": 1}\n')
    assert run.rewind_metrics(3) == 2
    assert [json.loads(x)["step"] for x in run.metrics("trainer").read_text().splitlines()] == [0, 1, 2]
    assert run.metrics("orchestrator").read_text() == '{"step": 0}\n{"step": 1}\n'
    discarded = [json.loads(x) for x in (tmp_path / "metrics" / "discarded.jsonl").read_text().splitlines()]
    assert discarded == [{"file": "trainer.jsonl", "resumed_from": 3, "step": s, "loss": s} for s in (3, 4)]


def test_keep_last_never_prunes_what_the_trainer_may_resume_from(tmp_path):
    _trainer_ckpt(tmp_path, 1)
    for step in (1, 2, 3, 4):  # the orchestrator runs ahead of the trainer's latest checkpoint (1)
        save_ckpt(tmp_path, step, {}, keep_last=1)
    assert RunDir(tmp_path).checkpoint_steps("orchestrator") == [1, 2, 3, 4]
    _trainer_ckpt(tmp_path, 3)
    save_ckpt(tmp_path, 5, {}, keep_last=1)
    assert RunDir(tmp_path).checkpoint_steps("orchestrator") == [3, 4, 5]


def test_checkpoint_steps():
    assert [s for s in range(12) if is_ckpt_step(s, 4, 10)] == [4, 8, 10]
    assert not any(is_ckpt_step(s, None, 10) for s in range(12))


def test_batch_digest_is_a_content_hash():
    sample = TrainingSample([1], [2], [True], [-0.5], [1.0], advantage=0.5, reward=1.0, policy_step=0)
    a, b = TrainingBatch(step=0, samples=[sample]), TrainingBatch(step=0, samples=[sample])
    assert batch_digest(a) == batch_digest(b) and len(batch_digest(a)) == 16
    assert batch_digest(a) != batch_digest(TrainingBatch(step=1, samples=[sample]))


def test_fresh_start_never_keeps_an_earlier_runs_batches_or_policies(tmp_path):
    from prime_rl.launcher.launch import prepare_output_dir

    for name in ("rollouts/step_0/STABLE", "broadcasts/step_3/STABLE", "metrics/trainer.jsonl", "checkpoints/x"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("earlier run")
    prepare_output_dir(RLConfig(output_dir=tmp_path, clean=False))
    assert not (tmp_path / "rollouts").exists() and not (tmp_path / "broadcasts").exists()
    assert (tmp_path / "metrics/trainer.jsonl").is_file() and (tmp_path / "checkpoints/x").is_file()
    prepare_output_dir(RLConfig(output_dir=tmp_path))
    assert not (tmp_path / "metrics/trainer.jsonl").exists() and (tmp_path / "checkpoints/x").is_file()

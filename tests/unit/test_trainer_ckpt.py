"""Checkpoints: round trip of model/optimizer/scheduler/step, incomplete ones ignored, pruning, resume errors."""

from __future__ import annotations

import pytest
import torch

from prime_rl.run_dir import ResumeError, RunDir
from prime_rl.trainer.ckpt import load_checkpoint, save_checkpoint


class Tied(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = torch.nn.Embedding(5, 3)
        self.head = torch.nn.Linear(3, 5, bias=False)
        self.head.weight = self.embed.weight


def setup(seed: int):
    torch.manual_seed(seed)
    model = Tied()
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1.0 / (s + 1))
    return model, optimizer, scheduler


def train_once(model, optimizer, scheduler):
    model.head(model.embed(torch.tensor([1, 2]))).sum().backward()
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad()


def test_round_trip_restores_everything(tmp_path):
    model, optimizer, scheduler = setup(0)
    train_once(model, optimizer, scheduler)
    path = save_checkpoint(tmp_path, 1, model, optimizer, scheduler)
    assert path == tmp_path / "checkpoints" / "step_1" / "trainer" and (path / "STABLE").is_file()
    train_once(model, optimizer, scheduler)

    other, other_opt, other_sched = setup(1)
    load_checkpoint(tmp_path, 1, other, other_opt, other_sched)
    train_once(other, other_opt, other_sched)
    assert torch.equal(other.embed.weight, model.embed.weight)
    assert other.head.weight is other.embed.weight
    assert other_opt.param_groups[0]["lr"] == optimizer.param_groups[0]["lr"] == pytest.approx(0.1 / 3)


def test_incomplete_checkpoints_are_ignored_and_pruned(tmp_path):
    model, optimizer, scheduler = setup(0)
    run = RunDir(tmp_path)
    for step in (2, 4, 6):
        save_checkpoint(tmp_path, step, model, optimizer, scheduler)
    run.checkpoint(8, "trainer").mkdir(parents=True)  # killed before STABLE
    (tmp_path / "checkpoints" / "step_4" / "orchestrator").mkdir()
    assert run.checkpoint_steps("trainer") == [2, 4, 6]
    assert run.resume_step(-1, ("trainer",)) == 6

    run.prune_checkpoints("trainer", keep=1)
    assert run.checkpoint_steps("trainer") == [6]
    assert not (tmp_path / "checkpoints" / "step_2").exists()
    assert (tmp_path / "checkpoints" / "step_4" / "orchestrator").is_dir()  # the orchestrator's part is not ours

    with pytest.raises(
        ResumeError, match=r"ckpt.resume_step` = 4: no complete trainer checkpoint .* \(complete: \[6\]\)"
    ):
        run.resume_step(4, ("trainer",))
    with pytest.raises(FileNotFoundError, match=r"ckpt\.resume_step` = -1 but .* holds no complete trainer checkpoint"):
        RunDir(tmp_path / "empty").resume_step(-1, ("trainer",))

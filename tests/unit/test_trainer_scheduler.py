"""Learning-rate schedules: exact multipliers per optimizer step."""

from __future__ import annotations

import pytest
import torch

from prime_rl.trainer.config import ConstantSchedulerConfig, CosineSchedulerConfig, LinearSchedulerConfig
from prime_rl.trainer.scheduler import lr_factor, setup_scheduler


def factors(config, max_steps, peak=1.0):
    return [lr_factor(config, s, max_steps, peak) for s in range(max_steps)]


def test_constant_with_warmup():
    assert factors(ConstantSchedulerConfig(warmup_steps=3), 6) == pytest.approx([0.25, 0.5, 0.75, 1, 1, 1])


def test_linear_decays_to_min_lr_at_last_step():
    config = LinearSchedulerConfig(warmup_steps=1, decay_steps=2, min_lr=0.2)
    assert factors(config, 6) == pytest.approx([0.5, 1, 1, 1, 0.6, 0.2])
    assert factors(LinearSchedulerConfig(), 5) == pytest.approx([1, 0.75, 0.5, 0.25, 0])


def test_cosine_with_warmup():
    config = CosineSchedulerConfig(warmup_steps=1, min_lr=0.0)
    assert factors(config, 4) == pytest.approx([0.5, 1.0, 0.5, 0.0])


def test_scheduler_sets_optimizer_lr_per_step():
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([param], lr=0.1)
    scheduler = setup_scheduler(LinearSchedulerConfig(), optimizer, max_steps=3)
    lrs = []
    for _ in range(3):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert lrs == pytest.approx([0.1, 0.05, 0.0])

"""AdamW implementations: `optim.fused` picks torch's fused kernel (default) or the multi-tensor `foreach` one, and
both train to the same weights (to float32 rounding)."""

from __future__ import annotations

import pytest
import torch

from prime_rl.trainer.ckpt import load_checkpoint, save_checkpoint
from prime_rl.trainer.config import AdamWConfig, ConstantSchedulerConfig, TrainerModelConfig
from prime_rl.trainer.model import setup_model
from prime_rl.trainer.optim import setup_optimizer
from prime_rl.trainer.packing import pack_samples
from prime_rl.trainer.rl.config import LossConfig, RLTrainerConfig
from prime_rl.trainer.rl.loss import setup_loss_fn
from prime_rl.trainer.scheduler import setup_scheduler
from prime_rl.trainer.step import train_step
from prime_rl.transport.types import TrainingSample
from prime_rl.utils.config import ConfigError, parse_config


def test_fused_is_the_default_and_parses_from_the_command_line():
    assert AdamWConfig().fused is True
    config = parse_config(RLTrainerConfig, ["--optim.fused", "false"])
    assert config.optim.fused is False


def test_fused_is_refused_on_sgd():
    with pytest.raises(ConfigError, match=r"optim.fused"):
        parse_config(RLTrainerConfig, ["--optim.type", "sgd", "--optim.fused", "true"])


@pytest.mark.parametrize("fused", [True, False])
def test_setup_optimizer_builds_the_chosen_implementation(tiny_model_dir, fused):
    model = setup_model(TrainerModelConfig(name=str(tiny_model_dir)))
    optimizer = setup_optimizer(AdamWConfig(fused=fused), model)
    assert optimizer.defaults["fused"] is (True if fused else None)
    assert optimizer.defaults["foreach"] is (None if fused else True)


def make_samples(advantages: list[float], length: int = 6) -> list[TrainingSample]:
    gen = torch.Generator().manual_seed(len(advantages))
    return [
        TrainingSample(
            prompt_ids=torch.randint(0, 5000, (4,), generator=gen).tolist(),
            completion_ids=torch.randint(0, 5000, (length,), generator=gen).tolist(),
            completion_mask=[True] * length,
            completion_logprobs=[-10.8] * length,
            completion_temperatures=[1.0] * length,
            advantage=adv,
            reward=0.0,
            policy_step=0,
        )
        for adv in advantages
    ]


def train(tiny_model_dir, fused: bool, steps: int = 3) -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    model = setup_model(TrainerModelConfig(name=str(tiny_model_dir)))
    config = AdamWConfig(lr=1e-3, fused=fused)
    optimizer = setup_optimizer(config, model)
    scheduler = setup_scheduler(ConstantSchedulerConfig(), optimizer, None)
    loss_fn = setup_loss_fn(LossConfig())
    for step in range(steps):
        samples = make_samples([1.0, -0.5, 0.25 * step, 2.0])
        train_step(model, optimizer, scheduler, pack_samples(samples, 40), loss_fn, config.max_norm, 1024)
    return {name: p.detach().clone() for name, p in model.named_parameters()}


def test_fused_and_foreach_adamw_train_to_the_same_weights(tiny_model_dir):
    fused, foreach = train(tiny_model_dir, True), train(tiny_model_dir, False)
    initial = train(tiny_model_dir, True, steps=0)
    assert all(not torch.equal(fused[n], initial[n]) for n in initial)  # every weight moved
    for name, weight in foreach.items():
        # float32 rounding of the two kernels' different operation orders, 3 steps: a few ulps of lr-sized updates.
        torch.testing.assert_close(fused[name], weight, atol=1e-6, rtol=0, msg=name)


@pytest.mark.parametrize("saved_fused, fused", [(True, False), (False, True)])
def test_resume_keeps_this_runs_kernel(tmp_path, saved_fused, fused):
    model = torch.nn.Linear(3, 2)
    saved = setup_optimizer(AdamWConfig(fused=saved_fused), model)
    model(torch.ones(1, 3)).sum().backward()
    saved.step()
    save_checkpoint(tmp_path, 1, model, saved, setup_scheduler(ConstantSchedulerConfig(), saved, None))
    other = torch.nn.Linear(3, 2)
    optimizer = setup_optimizer(AdamWConfig(fused=fused), other)
    load_checkpoint(tmp_path, 1, other, optimizer, setup_scheduler(ConstantSchedulerConfig(), optimizer, None))
    assert optimizer.param_groups[0]["fused"] is (True if fused else None)
    assert optimizer.param_groups[0]["foreach"] is (None if fused else True)
    torch.testing.assert_close(optimizer.state[other.weight]["exp_avg"], saved.state[model.weight]["exp_avg"])

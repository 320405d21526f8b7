"""Training-step behaviour on a tiny model: packing-independent gradients, and the sign of the policy update."""

from __future__ import annotations

import pytest
import torch

from prime_rl.trainer.config import AdamWConfig, ConstantSchedulerConfig, ModelConfig
from prime_rl.trainer.logprobs import packed_logprobs
from prime_rl.trainer.model import setup_model
from prime_rl.trainer.optim import setup_optimizer
from prime_rl.trainer.packing import pack_samples
from prime_rl.trainer.rl.config import LossConfig
from prime_rl.trainer.rl.loss import setup_loss_fn
from prime_rl.trainer.rl.step import forward_backward, train_step
from prime_rl.trainer.scheduler import setup_scheduler
from prime_rl.transport.types import TrainingSample


def make_samples(advantages: list[float], prompt_len: int = 4, completion_len: int = 6) -> list[TrainingSample]:
    gen = torch.Generator().manual_seed(0)
    samples = []
    for i, adv in enumerate(advantages):
        ids = torch.randint(0, 5000, (prompt_len + completion_len,), generator=gen).tolist()
        samples.append(
            TrainingSample(
                prompt_ids=ids[:prompt_len],
                completion_ids=ids[prompt_len:],
                completion_mask=[True] * completion_len,
                completion_logprobs=[-10.8] * completion_len,
                completion_temperatures=[0.8 + 0.1 * i] * completion_len,
                advantage=adv,
                reward=0.0,
                policy_step=0,
            )
        )
    return samples


def test_gradients_do_not_depend_on_packing(tiny_model_dir):
    # float64: in float32 the two packings differ by summation-order noise (~1e-6 on the embedding gradient).
    model = setup_model(ModelConfig(name=str(tiny_model_dir))).to(torch.float64)
    loss_config = LossConfig()
    loss_fn = setup_loss_fn(loss_config)
    samples = make_samples([1.0, -0.5, 0.25, 2.0])
    grads = []
    for seq_len, expected_micro_batches in [(40, 1), (10, 4)]:
        micro_batches = pack_samples(samples, seq_len)
        assert len(micro_batches) == expected_micro_batches
        model.zero_grad(set_to_none=True)
        forward_backward(model, micro_batches, loss_fn, loss_config, chunk_size=7)
        grads.append({n: p.grad.clone() for n, p in model.named_parameters()})
    for name, grad in grads[0].items():
        torch.testing.assert_close(grads[1][name], grad, atol=1e-10, rtol=1e-9, msg=name)


def completion_logprob(model, micro_batch) -> float:
    with torch.no_grad():
        lp, _ = packed_logprobs(
            model, micro_batch.input_ids, micro_batch.position_ids, micro_batch.temperatures, micro_batch.seq_lens
        )
    return float(lp[micro_batch.loss_mask].sum())


@pytest.mark.parametrize("advantage, direction", [(1.0, 1), (-1.0, -1)])
def test_advantage_sign_moves_completion_logprob(tiny_model_dir, advantage, direction):
    torch.manual_seed(0)
    model = setup_model(ModelConfig(name=str(tiny_model_dir)))
    optim_config = AdamWConfig(lr=1e-4, weight_decay=0.0)
    optimizer = setup_optimizer(optim_config, model)
    scheduler = setup_scheduler(ConstantSchedulerConfig(), optimizer, None)
    loss_config = LossConfig()
    micro_batches = pack_samples(make_samples([advantage]), seq_len=64)
    before = completion_logprob(model, micro_batches[0])
    result = train_step(model, optimizer, scheduler, micro_batches, setup_loss_fn(loss_config), loss_config, 1.0, 1024)
    after = completion_logprob(model, micro_batches[0])
    assert result.num_loss_tokens == 6
    assert (after - before) * direction > 0.01

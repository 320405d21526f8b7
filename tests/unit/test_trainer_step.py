"""Training-step behaviour on a tiny model: packing-independent gradients, the sign of the policy update, one step
function for RL and SFT, and no way to hand the step a loss it then ignores."""

from __future__ import annotations

import inspect

import pytest
import torch

from prime_rl.trainer.config import AdamWConfig, ConstantSchedulerConfig, TrainerModelConfig
from prime_rl.trainer.logprobs import packed_logprobs
from prime_rl.trainer.model import setup_model
from prime_rl.trainer.optim import setup_optimizer
from prime_rl.trainer.packing import pack_samples
from prime_rl.trainer.rl.config import LossConfig, PPOClipLossConfig
from prime_rl.trainer.rl.loss import LossInputs, LossOutputs, compute_micro_batch_loss, setup_loss_fn
from prime_rl.trainer.scheduler import setup_scheduler
from prime_rl.trainer.step import forward_backward, train_step
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
    model = setup_model(TrainerModelConfig(name=str(tiny_model_dir))).to(torch.float64)
    loss_fn = setup_loss_fn(LossConfig())
    samples = make_samples([1.0, -0.5, 0.25, 2.0])
    grads = []
    for seq_len, expected_micro_batches in [(40, 1), (10, 4)]:
        micro_batches = pack_samples(samples, seq_len)
        assert len(micro_batches) == expected_micro_batches
        model.zero_grad(set_to_none=True)
        forward_backward(model, micro_batches, loss_fn, chunk_size=7)
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
    model = setup_model(TrainerModelConfig(name=str(tiny_model_dir)))
    optim_config = AdamWConfig(lr=1e-4, weight_decay=0.0)
    optimizer = setup_optimizer(optim_config, model)
    scheduler = setup_scheduler(ConstantSchedulerConfig(), optimizer, None)
    micro_batches = pack_samples(make_samples([advantage]), seq_len=64)
    before = completion_logprob(model, micro_batches[0])
    result = train_step(model, optimizer, scheduler, micro_batches, setup_loss_fn(LossConfig()), 1.0, 1024)
    after = completion_logprob(model, micro_batches[0])
    assert result.num_loss_tokens == 6
    assert (after - before) * direction > 0.01


def test_a_custom_loss_is_what_the_step_computes(tiny_model_dir):
    # The step takes one loss object, no config beside it: a custom function handed to it is called per sequence.
    model = setup_model(TrainerModelConfig(name=str(tiny_model_dir)))
    calls = []

    def loss_fn(inputs: LossInputs) -> LossOutputs:
        calls.append(int(inputs.loss_mask.sum()))
        return LossOutputs(loss=-inputs.trainer_logprobs.sum(), metrics={"seen": torch.tensor(1.0)})

    assert "loss_config" not in inspect.signature(train_step).parameters
    assert "loss_config" not in inspect.signature(compute_micro_batch_loss).parameters
    micro_batches = pack_samples(make_samples([1.0, -1.0]), seq_len=64)
    _, metrics = forward_backward(model, micro_batches, loss_fn, chunk_size=1024)
    assert calls == [6, 6]
    assert metrics["seen"][0].tolist() == [1.0, 1.0]
    assert "mismatch_kl" not in metrics
    # Only `setup_loss_fn` of the default config attaches the vectorised path, built from that same config.
    assert setup_loss_fn(LossConfig()).packed is not None
    assert setup_loss_fn(PPOClipLossConfig()).packed is None
    packed = setup_loss_fn(LossConfig(kl_tau=0.5)).packed
    assert packed.keywords["loss_config"] == LossConfig(kl_tau=0.5)


def test_rl_and_sft_loops_run_the_same_step_function(tiny_model_dir, tmp_path, monkeypatch):
    from prime_rl.trainer import step as step_module
    from prime_rl.trainer.rl import train as rl_train
    from prime_rl.trainer.rl.config import RLTrainerConfig
    from prime_rl.trainer.sft import train as sft_train
    from prime_rl.trainer.sft.config import SFTConfig
    from prime_rl.trainer.sft.loss import SFT_LOSS
    from prime_rl.utils.config import parse_config

    losses = []

    def spy(model, optimizer, scheduler, micro_batches, loss_fn, max_norm, chunk_size):
        losses.append(loss_fn)
        return train_step(model, optimizer, scheduler, micro_batches, loss_fn, max_norm, chunk_size)

    for module in (step_module, rl_train, sft_train):  # wherever the loops look the step up
        if hasattr(module, "train_step"):
            assert module.train_step is train_step
            monkeypatch.setattr(module, "train_step", spy)
    common = ["--model.name", str(tiny_model_dir), "--max-steps", "1", "--log.level", "warning", "--log.file", "false"]
    common += ["--weights.no-final", "--seq-len", "64"]
    rl_args = ["--output-dir", str(tmp_path / "rl"), "--data.fake", "--data.fake-batch-size", "2"]
    rl_train.train(parse_config(RLTrainerConfig, [*common, *rl_args, "--data.fake-completion-len", "8"]))
    data = tmp_path / "data.jsonl"
    data.write_text('{"prompt": "Reverse abc", "completion": "cba"}\n')
    sft_args = ["--output-dir", str(tmp_path / "sft"), "--data.path", str(data), "--batch-size", "1"]
    sft_train.train(parse_config(SFTConfig, [*common, *sft_args]))
    assert len(losses) == 2
    assert losses[0].packed.keywords["loss_config"] == LossConfig()
    assert losses[1] is SFT_LOSS


def test_head_and_embedding_gradients_added_in_place_equal_autograds_accumulation(tiny_model_dir, monkeypatch):
    """From the second micro-batch on, the LM head's and the input embedding's gradients (one tied weight here) go
    into `weight.grad` in place (no [vocab, hidden] buffer at the step's peak); the gradients equal autograd's own
    accumulation."""
    import contextlib

    import prime_rl.trainer.in_place_grad as in_place_grad
    import prime_rl.trainer.logprobs as logprobs
    import prime_rl.trainer.step as step

    model = setup_model(TrainerModelConfig(name=str(tiny_model_dir))).to(torch.float64)
    assert model.get_input_embeddings().weight is model.get_output_embeddings().weight
    loss_fn = setup_loss_fn(LossConfig())
    micro_batches = pack_samples(make_samples([1.0, -0.5, 0.25, 2.0]), 10)
    taken = {"head": [], "embedding": []}
    accumulated = in_place_grad.accumulated_grad

    def recorder(calls: list):
        return lambda weight, dtype: calls.append(accumulated(weight, dtype)) or calls[-1]

    monkeypatch.setattr(logprobs, "accumulated_grad", recorder(taken["head"]))
    monkeypatch.setattr(in_place_grad, "accumulated_grad", recorder(taken["embedding"]))
    grads = []
    for in_place in (step.in_place_grads, contextlib.nullcontext):
        monkeypatch.setattr(step, "in_place_grads", in_place)
        model.zero_grad(set_to_none=True)
        forward_backward(model, micro_batches, loss_fn, chunk_size=7)
        grads.append({n: p.grad.clone() for n, p in model.named_parameters()})
    for name in ("head", "embedding"):  # the second run never asks
        assert [t is not None for t in taken[name]] == [False, True, True, True], name
    for name, grad in grads[1].items():
        torch.testing.assert_close(grads[0][name], grad, atol=1e-12, rtol=1e-12, msg=name)

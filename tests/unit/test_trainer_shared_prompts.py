"""Shared prompts (Prefix Grouper): a group's prompt runs once, yet logprobs, loss and gradients equal the unshared
packing (float64), and the packed micro-batches respect `seq_len`."""

from __future__ import annotations

import re

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from prime_rl.trainer.attention import prompt_tree_mask, register_varlen_attention
from prime_rl.trainer.config import TrainerModelConfig
from prime_rl.trainer.logprobs import packed_logprobs
from prime_rl.trainer.model import setup_model
from prime_rl.trainer.packing import MicroBatch, Segment, group_by_prompt, pack_samples
from prime_rl.trainer.rl.config import LossConfig
from prime_rl.trainer.rl.loss import LossInputs, LossOutputs, setup_loss_fn
from prime_rl.trainer.step import forward_backward
from prime_rl.transport.types import TrainingSample


def sample(prompt: list[int], completion: list[int], mask=None, temp=1.0, logprob=-10.8, adv=1.0) -> TrainingSample:
    n = len(completion)
    return TrainingSample(
        prompt_ids=list(prompt),
        completion_ids=list(completion),
        completion_mask=mask if mask is not None else [True] * n,
        completion_logprobs=[logprob if m else 0.0 for m in (mask or [True] * n)],
        completion_temperatures=[temp] * n if isinstance(temp, float) else temp,
        advantage=adv,
        reward=0.0,
        policy_step=0,
    )


VOCAB = 512


def make_groups(group_sizes: list[int], prompt_len: int, temperature: bool, seed: int = 0) -> list[TrainingSample]:
    """Groups of random samples; the second sample of each group is multi-turn (environment tokens masked out)."""
    gen = torch.Generator().manual_seed(seed)

    def ids(n: int) -> list[int]:
        return torch.randint(0, VOCAB, (n,), generator=gen).tolist()

    samples = []
    for size in group_sizes:
        prompt = ids(prompt_len)
        for j in range(size):
            n = int(torch.randint(3, 9, (1,), generator=gen))
            mask = [not (j == 1 and 2 <= t < 4) for t in range(n)]
            temps = [0.6 + 0.1 * j + 0.05 * t for t in range(n)] if temperature else 1.0
            logprob = -6.2 + 0.3 * float(torch.randn(1, generator=gen))
            samples.append(sample(prompt, ids(n), mask, temps, logprob, adv=float(torch.randn(1, generator=gen))))
    # A sample whose prompt diverges from its group's (a later turn split off): it keeps its own prompt.
    samples.append(sample([*samples[0].prompt_ids[:-1], 7], ids(5)))
    return samples


def seed_ppo_clip_loss(inputs: LossInputs, clip_eps: float = 0.2) -> LossOutputs:
    """The seed document's custom loss, verbatim in substance: called once per sequence."""
    ratio = torch.exp(inputs.trainer_logprobs - inputs.inference_logprobs)
    clipped_ratio = torch.clamp(ratio, 1 - clip_eps, 1 + clip_eps)
    loss = -torch.min(ratio * inputs.advantages, clipped_ratio * inputs.advantages)[inputs.loss_mask].sum()
    return LossOutputs(loss=loss, metrics={"clip_frac": (ratio != clipped_ratio)[inputs.loss_mask].float().mean()})


@pytest.fixture(scope="module")
def model64() -> LlamaForCausalLM:
    register_varlen_attention()
    config = LlamaConfig(
        vocab_size=VOCAB,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        attn_implementation="varlen",
    )
    torch.manual_seed(0)
    return LlamaForCausalLM(config).double()


def per_sample_logprobs(model, micro_batches: list[MicroBatch]) -> dict[tuple[int, ...], torch.Tensor]:
    out = {}
    for mb in micro_batches:
        with torch.no_grad():
            lp, _ = packed_logprobs(
                model, mb.input_ids, mb.position_ids, mb.temperatures, mb.seq_lens, 5, shared=mb.shared
            )
        for ids, values in zip(torch.split(mb.input_ids, mb.seq_lens), torch.split(lp, mb.seq_lens), strict=True):
            out[tuple(ids.tolist())] = values
    return out


def test_prompt_tree_mask_sees_the_prompt_and_its_own_completion():
    expected = [
        [1, 0, 0, 0, 0, 0],
        [1, 1, 0, 0, 0, 0],
        [1, 1, 1, 0, 0, 0],
        [1, 1, 1, 1, 0, 0],
        [1, 1, 0, 0, 1, 0],
        [1, 1, 0, 0, 1, 1],
    ]
    assert prompt_tree_mask(2, [2, 2]).int().tolist() == expected


def test_shared_layout_runs_each_prompt_once():
    a, b, c = sample([1, 2, 3], [10, 11]), sample([1, 2, 3], [20]), sample([1, 2, 3], [30, 31, 32])
    (mb,) = pack_samples([a, sample([9], [8, 7]), b, c], seq_len=64, share=True)
    shared = mb.shared
    assert shared.segments == [Segment(3, (2, 1, 3)), Segment(3)]
    assert shared.input_ids.tolist() == [1, 2, 3, 10, 11, 20, 30, 31, 32, 9, 8, 7]
    assert shared.position_ids.tolist() == [0, 1, 2, 3, 4, 3, 3, 4, 5, 0, 1, 2]
    # The loss sees every sample whole (prompt included), exactly as without sharing.
    assert mb.seq_lens == [5, 4, 6, 3]
    assert mb.input_ids.tolist() == [1, 2, 3, 10, 11, 1, 2, 3, 20, 1, 2, 3, 30, 31, 32, 9, 8, 7]
    assert shared.token_index.tolist() == [0, 1, 2, 3, 4, 0, 1, 2, 5, 0, 1, 2, 6, 7, 8, 9, 10, 11]
    assert (mb.num_model_tokens, mb.num_tokens, mb.num_loss_tokens) == (12, 18, 8)
    (unshared,) = pack_samples([a, sample([9], [8, 7]), b, c], seq_len=64)
    assert unshared.shared is None and unshared.num_model_tokens == 18


def test_group_by_prompt_shares_exact_prompts_and_splits_long_groups():
    samples = [
        sample([1, 2, 3, 4], [10] * 6),
        sample([1, 2, 3, 4], [11] * 6),
        sample([1, 2, 3, 5], [12] * 2),  # diverges in its last prompt token: alone
        sample([1, 2, 3, 4], [13] * 6),
        sample([1, 2, 3, 4], [14] * 30),  # truncated to seq_len: alone
        sample([1, 2, 3, 4], [15] * 6),
        sample([], [16] * 3),
    ]
    # seq_len 20: a prompt of 4 and at most two completions of 6 per segment.
    assert group_by_prompt(samples, seq_len=20) == [(4, [0, 1]), (0, [2]), (4, [3, 5]), (0, [4]), (0, [6])]
    micro_batches = pack_samples(samples, seq_len=20, share=True)
    assert all(mb.num_model_tokens <= 20 for mb in micro_batches)
    assert sorted(mb.num_model_tokens for mb in micro_batches) == [6, 16, 19, 20]
    assert sum(mb.num_tokens for mb in micro_batches) == 10 * 4 + 6 + 20 + 3
    assert sum(mb.num_loss_tokens for mb in micro_batches) == sum(
        mb.num_loss_tokens for mb in pack_samples(samples, seq_len=20)
    )


@pytest.mark.parametrize("seq_len", [16, 23, 40, 200])
def test_shared_packing_respects_seq_len_and_keeps_every_sample(seq_len):
    samples = make_groups([8, 3, 1, 5], prompt_len=9, temperature=True)
    shared = pack_samples(samples, seq_len, share=True)
    unshared = pack_samples(samples, seq_len)
    assert all(mb.num_model_tokens <= seq_len for mb in shared)
    assert sum(mb.num_model_tokens for mb in shared) < sum(mb.num_model_tokens for mb in unshared)

    def contents(micro_batches):
        rows = []
        for mb in micro_batches:
            fields = (mb.input_ids, mb.loss_mask, mb.inference_logprobs, mb.advantages, mb.temperatures)
            rows += zip(*(tuple(map(tuple, torch.split(f, mb.seq_lens))) for f in fields), strict=True)
        return sorted(rows)

    assert contents(shared) == contents(unshared)


@pytest.mark.parametrize("temperature", [False, True])
@pytest.mark.parametrize("loss", ["default", "seed_custom"])
def test_shared_prompts_equal_unshared_logprobs_loss_and_gradients(model64, temperature, loss):
    loss_fn = setup_loss_fn(LossConfig()) if loss == "default" else seed_ppo_clip_loss
    samples = make_groups([2, 8, 1, 3, 5], prompt_len=11, temperature=temperature)
    results = {}
    for share, seq_len in [(False, 512), (True, 512), (True, 30)]:
        micro_batches = pack_samples(samples, seq_len, share=share)
        model64.zero_grad(set_to_none=True)
        total, metrics = forward_backward(model64, micro_batches, loss_fn, chunk_size=7)
        grads = {n: p.grad.clone() for n, p in model64.named_parameters()}
        lp = per_sample_logprobs(model64, micro_batches)
        results[share, seq_len] = total, metrics, grads, lp, sum(mb.num_model_tokens for mb in micro_batches)
    ref_total, ref_metrics, ref_grads, ref_lp, ref_tokens = results[False, 512]
    for key in [(True, 512), (True, 30)]:
        total, metrics, grads, lp, tokens = results[key]
        assert tokens < ref_tokens
        assert total == pytest.approx(ref_total, abs=1e-6, rel=0)
        assert lp.keys() == ref_lp.keys()
        for ids, values in lp.items():
            torch.testing.assert_close(values, ref_lp[ids], atol=1e-6, rtol=0)
        for name, grad in grads.items():
            torch.testing.assert_close(grad, ref_grads[name], atol=1e-6, rtol=0, msg=name)
        for name, values in metrics.items():
            got, ref = torch.cat(values).sort().values, torch.cat(ref_metrics[name]).sort().values
            torch.testing.assert_close(got, ref, atol=1e-6, rtol=0, msg=name)


def test_shared_prompts_need_varlen_attention(tiny_model_dir):
    model = setup_model(TrainerModelConfig(name=str(tiny_model_dir), attn_implementation="sdpa"))
    (mb,) = pack_samples([sample([1, 2], [3]), sample([1, 2], [4])], seq_len=16, share=True)
    with pytest.raises(
        ValueError, match=re.escape("shared prompts need model.attn_implementation = 'varlen', got 'sdpa'")
    ):
        packed_logprobs(model, mb.input_ids, mb.position_ids, mb.temperatures, mb.seq_lens, shared=mb.shared)


def test_share_prompts_is_a_trainer_option_on_by_default():
    from prime_rl.trainer.rl.config import RLTrainerConfig
    from prime_rl.utils.config import parse_config

    assert RLTrainerConfig().share_prompts is True
    assert parse_config(RLTrainerConfig, ["--no-share-prompts"]).share_prompts is False

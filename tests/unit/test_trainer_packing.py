"""Sample layout (architecture.md §5) and first-fit-decreasing packing."""

from __future__ import annotations

import pytest
import torch

from prime_rl.trainer.packing import first_fit_decreasing, pack_samples, prepare_sample
from prime_rl.transport.types import TrainingSample


def sample(prompt, completion, advantage=0.5, temps=None, policy_step=0) -> TrainingSample:
    n = len(completion)
    return TrainingSample(
        prompt_ids=list(prompt),
        completion_ids=list(completion),
        completion_mask=[i % 2 == 0 for i in range(n)],
        completion_logprobs=[-0.1 * (i + 1) for i in range(n)],
        completion_temperatures=temps or [0.7] * n,
        advantage=advantage,
        reward=1.0,
        policy_step=policy_step,
    )


def test_prepare_sample_layout_and_truncation():
    s = sample([1, 2, 3], [4, 5, 6], temps=[0.7, 0.9, 1.1])
    full = prepare_sample(s, seq_len=100)
    assert full.input_ids_T == [1, 2, 3, 4, 5, 6]
    assert full.loss_mask_T == [False, False, False, True, False, True]
    assert full.inference_logprobs_T == pytest.approx([0, 0, 0, -0.1, -0.2, -0.3])
    assert full.temperatures_T == [0.7, 0.7, 0.7, 0.7, 0.9, 1.1]
    assert full.advantage == 0.5
    cut = prepare_sample(s, seq_len=4)
    assert cut.input_ids_T == [1, 2, 3, 4]
    assert cut.loss_mask_T == [False, False, False, True]
    assert cut.temperatures_T == [0.7] * 4


def test_prepare_sample_names_the_ragged_sample():
    bad = sample([1], [2, 3])
    bad.completion_logprobs = [-1.0]
    with pytest.raises(ValueError, match="sample 7: completion_logprobs has 1 entries for 2 completion tokens"):
        prepare_sample(bad, 10, index=7)


def test_first_fit_decreasing_bins():
    assert first_fit_decreasing([5, 3, 4, 2, 6], capacity=8) == [[4, 3], [0, 1], [2]]
    assert first_fit_decreasing([8, 8], capacity=8) == [[0], [1]]


def test_pack_samples_restarts_positions_and_respects_budget():
    samples = [sample(range(3), range(10, 10 + n)) for n in (5, 2, 4, 1)]  # lengths 8, 5, 7, 4
    micro_batches = pack_samples(samples, seq_len=12)
    assert [mb.seq_lens for mb in micro_batches] == [[8, 4], [7, 5]]
    first = micro_batches[0]
    assert first.position_ids.tolist() == [*range(8), *range(4)]
    assert first.input_ids.tolist() == [0, 1, 2, 10, 11, 12, 13, 14, 0, 1, 2, 10]
    assert first.advantages.tolist() == [0.5] * 12
    assert first.num_loss_tokens == 3 + 1
    assert sum(mb.num_tokens for mb in micro_batches) == 24
    assert all(mb.num_tokens <= 12 for mb in micro_batches)
    assert first.inference_logprobs.dtype == torch.float32


def test_teacher_logprobs_follow_the_sample_layout_with_shared_prompts_and_truncation():
    def sample(prompt, completion, teacher):
        n = len(completion)
        return TrainingSample(prompt, completion, [True] * n, [-0.5] * n, [1.0] * n, 1.0, 0.0, 0, -1, "", teacher)

    samples = [
        sample([1, 2, 3], [4, 5], [-0.1, -0.2]),
        sample([1, 2, 3], [6], [-0.3]),
        sample([7, 8], [9, 10, 11, 12, 13], [-1.0, -2.0, -3.0, -4.0, -5.0]),
    ]
    for share in (False, True):
        micro_batches = pack_samples(samples, 6, share=share)
        got = {}
        for mb in micro_batches:
            for ids, teacher in zip(
                torch.split(mb.input_ids, mb.seq_lens), torch.split(mb.teacher_logprobs, mb.seq_lens), strict=True
            ):
                got[tuple(ids.tolist())] = teacher.tolist()
        assert got == {
            (1, 2, 3, 4, 5): [0.0, 0.0, 0.0, pytest.approx(-0.1), pytest.approx(-0.2)],
            (1, 2, 3, 6): [0.0, 0.0, 0.0, pytest.approx(-0.3)],
            (7, 8, 9, 10, 11, 12): [0.0, 0.0, -1.0, -2.0, -3.0, -4.0],  # cut to seq_len with its tokens
        }
        assert share == any(mb.shared is not None for mb in micro_batches)
    assert all(mb.teacher_logprobs is None for mb in pack_samples([sample([1], [2], None)], 6))
    with pytest.raises(ValueError, match="some samples of the batch carry teacher logprobs and others do not"):
        pack_samples([sample([1], [2], None), sample([1], [3], [-0.1])], 6)
    with pytest.raises(ValueError, match="sample 0: completion_teacher_logprobs has 1 entries for 2 completion tokens"):
        pack_samples([sample([1], [2, 3], [-0.1])], 6)

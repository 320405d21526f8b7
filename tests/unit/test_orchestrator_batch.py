import pytest

from prime_rl.environments.types import Example, Rollout, Turn
from prime_rl.orchestrator.batch import Group, assemble_batch, baseline_rewards
from prime_rl.orchestrator.config import AdvantageConfig, CustomAdvantageConfig


def _rollout(example_id: int, reward: float, n_tokens: int = 2, policy: int = 0, error: str | None = None) -> Rollout:
    turn = Turn(
        prompt_ids=[1, 2, 3],
        completion_ids=list(range(10, 10 + n_tokens)),
        completion_logprobs=[-0.5] * n_tokens,
        completion_mask=[True] * n_tokens,
        temperature=0.7,
        policy_step=policy,
        finish_reason="stop",
    )
    return Rollout(example_id, "env", [], [], [turn], reward=reward, error=error)


def _group(example_id: int, rewards: list[float], **kwargs) -> Group:
    example = Example(example_id=example_id, prompt=[])
    return Group("env", example, [_rollout(example_id, r, **kwargs) for r in rewards])


def test_default_advantages_follow_group_order_and_fill_samples():
    groups = [_group(7, [1.0, 0.0]), _group(3, [0.5, 0.25], policy=2)]
    batch, stats = assemble_batch(4, groups, AdvantageConfig(), seq_len=100)
    assert batch.step == 4
    assert [s.example_id for s in batch.samples] == [7, 7, 3, 3]
    assert [s.advantage for s in batch.samples] == [0.5, -0.5, 0.125, -0.125]
    assert [s.reward for s in batch.samples] == [1.0, 0.0, 0.5, 0.25]
    assert [s.policy_step for s in batch.samples] == [0, 0, 2, 2]
    sample = batch.samples[0]
    assert sample.prompt_ids == [1, 2, 3] and sample.completion_ids == [10, 11]
    assert sample.completion_mask == [True, True] and sample.completion_temperatures == [0.7, 0.7]
    assert stats.advantages_E_G == [[0.5, -0.5], [0.125, -0.125]]


def test_custom_advantage_by_import_path_gets_lengths():
    config = CustomAdvantageConfig(import_path=f"{__name__}._length_advantage", kwargs={"scale": 2.0})
    groups = [_group(0, [1.0, 1.0], n_tokens=3)]
    batch, _ = assemble_batch(0, groups, config, seq_len=100)
    assert [s.advantage for s in batch.samples] == [6.0, 6.0]


def _length_advantage(inputs, scale: float):
    from prime_rl.orchestrator.advantage import AdvantageOutputs

    return AdvantageOutputs(advantages=inputs.completion_lengths.double() * scale)


def test_zero_variance_groups_dropped_only_when_asked():
    groups = [_group(0, [1.0, 1.0]), _group(1, [1.0, 0.0])]
    kept, _ = assemble_batch(0, groups, AdvantageConfig(), seq_len=100)
    filtered, stats = assemble_batch(0, groups, AdvantageConfig(), seq_len=100, filter_zero_variance=True)
    assert len(kept.samples) == 4
    assert [s.example_id for s in filtered.samples] == [1, 1] and stats.dropped_groups == 1


def test_errored_rollout_is_masked_and_does_not_move_the_baseline():
    group = _group(0, [1.0, 0.0, 0.5])
    group.rollouts[2].error = "rollout failed: boom"
    group.rollouts[2].reward = 0.0
    assert baseline_rewards(group.rollouts) == [1.0, 0.0, 0.5]
    batch, _ = assemble_batch(0, [group], AdvantageConfig(), seq_len=100)
    assert [s.advantage for s in batch.samples] == [0.5, -0.5, 0.0]
    assert batch.samples[2].completion_mask == [False, False]


def test_samples_cut_to_seq_len_and_prompt_overflow_dropped():
    batch, stats = assemble_batch(0, [_group(0, [1.0, 0.0], n_tokens=5)], AdvantageConfig(), seq_len=5)
    assert [len(s.completion_ids) for s in batch.samples] == [2, 2]
    assert batch.samples[0].completion_logprobs == [-0.5, -0.5] and stats.truncated_samples == 2
    batch, stats = assemble_batch(0, [_group(0, [1.0, 0.0])], AdvantageConfig(), seq_len=3)
    assert batch.samples == [] and stats.dropped_samples == 2


def test_groups_of_different_sizes_are_rejected():
    with pytest.raises(ValueError, match=r"step 2: groups of different sizes \[1, 2\]"):
        assemble_batch(2, [_group(0, [1.0]), _group(1, [1.0, 0.0])], AdvantageConfig(), seq_len=10)

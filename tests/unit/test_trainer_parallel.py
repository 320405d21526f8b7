"""The work split of a data-parallel step (no process group needed): balanced by tokens, the same pass count on
every rank, and the thread split of `num_threads`."""

from __future__ import annotations

import pytest

from prime_rl.launcher.processes import ProcessSpec
from prime_rl.trainer.config import rank_threads
from prime_rl.trainer.packing import pack_samples
from prime_rl.trainer.parallel import World, assign_micro_batches, device_mesh, rank_micro_batches
from prime_rl.transport.types import TrainingSample


def test_micro_batches_are_balanced_by_tokens():
    assert assign_micro_batches([100, 10, 10, 10], 2) == [[0], [1, 2, 3]]
    assert assign_micro_batches([5, 7, 3, 6, 4], 2) == [[1, 2, 4], [0, 3]]  # 14 and 11 tokens
    assert assign_micro_batches([8], 3) == [[0], [], []]


def sample(n: int) -> TrainingSample:
    return TrainingSample(
        prompt_ids=[1] * 2, completion_ids=[2] * (n - 2), completion_mask=[True] * (n - 2),
        completion_logprobs=[-1.0] * (n - 2), completion_temperatures=[1.0] * (n - 2), advantage=1.0, reward=0.0,
        policy_step=0,
    )  # fmt: skip


def test_every_rank_runs_the_same_number_of_passes():
    micro_batches = pack_samples([sample(10), sample(9), sample(8)], seq_len=10)
    assert [mb.num_tokens for mb in micro_batches] == [10, 9, 8]
    mine0, pad0 = rank_micro_batches(micro_batches, World(rank=0, size=2, distributed=True))
    mine1, pad1 = rank_micro_batches(micro_batches, World(rank=1, size=2, distributed=True))
    assert ([mb.num_tokens for mb in mine0], pad0) == ([10], 1)
    assert ([mb.num_tokens for mb in mine1], pad1) == ([9, 8], 0)
    mine, pad = rank_micro_batches(micro_batches[:1], World(rank=3, size=4, distributed=True))
    assert (mine, pad) == ([], 1)  # a rank without work still runs one (empty) pass


def test_threads_are_shared_by_the_ranks_of_a_machine():
    assert rank_threads(None, 2) is None
    assert rank_threads(4, 1) == 4
    assert rank_threads(4, 2) == 2
    assert rank_threads(1, 2) == 1


def test_shard_size_must_divide_the_world():
    with pytest.raises(ValueError, match=r"parallel.shard_size = 3 does not divide the 4 trainer ranks"):
        device_mesh("cpu", 3, World(rank=0, size=4, distributed=True))


def test_rl_starts_several_trainer_ranks_under_torchrun(tmp_path):
    spec = ProcessSpec("trainer", "prime_rl.trainer.rl.cli", tmp_path / "t.toml", tmp_path / "t.log", 1)
    assert spec.command()[1:3] == [
        "-c",
        "import sys; sys.argv[0] = 'trainer'; from prime_rl.trainer.rl.cli import main; main()",
    ]
    spec.num_processes = 2
    assert spec.command()[1:] == [
        "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2", "-m", "prime_rl.trainer.rl.cli", "@",
        str(tmp_path / "t.toml"),
    ]  # fmt: skip

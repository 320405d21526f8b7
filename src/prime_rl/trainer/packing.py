"""Turns orchestrator samples into packed micro-batches of at most `seq_len` tokens (architecture.md §5).

A sample is `prompt_ids + completion_ids`: loss mask False on the prompt and the completion mask on the completion,
inference logprobs 0 on the prompt, the first completion temperature on the prompt, the advantage on every token,
truncated to `seq_len`. Samples are packed first-fit decreasing; position ids restart at 0 for every sample.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from prime_rl.transport.types import TrainingSample


@dataclass
class PreparedSample:
    """One sample as per-token lists (length T, at most `seq_len`)."""

    input_ids_T: list[int]
    loss_mask_T: list[bool]
    inference_logprobs_T: list[float]
    temperatures_T: list[float]
    advantage: float


@dataclass
class MicroBatch:
    """Samples concatenated into one row; `seq_lens` splits it back into samples."""

    input_ids: Int[Tensor, " tokens"]
    position_ids: Int[Tensor, " tokens"]
    loss_mask: Bool[Tensor, " tokens"]
    inference_logprobs: Float[Tensor, " tokens"]
    advantages: Float[Tensor, " tokens"]
    temperatures: Float[Tensor, " tokens"]
    seq_lens: list[int] = field(default_factory=list)

    @property
    def num_tokens(self) -> int:
        return int(self.input_ids.shape[0])

    @property
    def num_loss_tokens(self) -> int:
        return int(self.loss_mask.sum())

    def to(self, device: torch.device) -> MicroBatch:
        moved = {k: v.to(device) for k, v in vars(self).items() if isinstance(v, Tensor)}
        return MicroBatch(**moved, seq_lens=self.seq_lens)


def prepare_sample(sample: TrainingSample, seq_len: int, index: int = 0) -> PreparedSample:
    """Builds the per-token lists of one sample; raises ValueError naming the sample index on ragged fields."""
    n = len(sample.completion_ids)
    for name in ("completion_mask", "completion_logprobs", "completion_temperatures"):
        if len(getattr(sample, name)) != n:
            raise ValueError(
                f"sample {index}: {name} has {len(getattr(sample, name))} entries for {n} completion tokens"
            )
    prompt_len = len(sample.prompt_ids)
    prompt_temp = sample.completion_temperatures[0] if n else 1.0
    return PreparedSample(
        input_ids_T=(sample.prompt_ids + sample.completion_ids)[:seq_len],
        loss_mask_T=([False] * prompt_len + list(sample.completion_mask))[:seq_len],
        inference_logprobs_T=([0.0] * prompt_len + list(sample.completion_logprobs))[:seq_len],
        temperatures_T=([prompt_temp] * prompt_len + list(sample.completion_temperatures))[:seq_len],
        advantage=sample.advantage,
    )


def first_fit_decreasing(lengths: list[int], capacity: int) -> list[list[int]]:
    """Bins of indices whose lengths sum to at most `capacity`, longest items placed first."""
    bins: list[list[int]] = []
    loads: list[int] = []
    for i in sorted(range(len(lengths)), key=lambda i: -lengths[i]):
        for b, load in enumerate(loads):
            if load + lengths[i] <= capacity:
                bins[b].append(i)
                loads[b] += lengths[i]
                break
        else:
            bins.append([i])
            loads.append(lengths[i])
    return bins


def collate(samples: list[PreparedSample]) -> MicroBatch:
    def cat(name: str, dtype: torch.dtype) -> Tensor:
        return torch.tensor([x for s in samples for x in getattr(s, name)], dtype=dtype)

    lens = [len(s.input_ids_T) for s in samples]
    return MicroBatch(
        input_ids=cat("input_ids_T", torch.long),
        position_ids=torch.cat([torch.arange(n) for n in lens]),
        loss_mask=cat("loss_mask_T", torch.bool),
        inference_logprobs=cat("inference_logprobs_T", torch.float32),
        advantages=torch.cat(
            [torch.full((n,), s.advantage, dtype=torch.float32) for n, s in zip(lens, samples, strict=True)]
        ),
        temperatures=cat("temperatures_T", torch.float32),
        seq_lens=lens,
    )


def pack_samples(samples: list[TrainingSample], seq_len: int) -> list[MicroBatch]:
    """Prepares, truncates and packs the samples of one step into micro-batches of at most `seq_len` tokens."""
    prepared = [prepare_sample(s, seq_len, i) for i, s in enumerate(samples)]
    prepared = [p for p in prepared if p.input_ids_T]
    bins = first_fit_decreasing([len(p.input_ids_T) for p in prepared], seq_len)
    return [collate([prepared[i] for i in b]) for b in bins]

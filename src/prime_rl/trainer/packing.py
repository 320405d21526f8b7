"""Turns orchestrator samples into packed micro-batches of at most `seq_len` tokens (architecture.md §5).

A sample is `prompt_ids + completion_ids`: loss mask False on the prompt and the completion mask on the completion,
inference (and teacher) logprobs 0 on the prompt, the first completion temperature on the prompt, the advantage on
every token, truncated to `seq_len`. Samples are packed first-fit decreasing; position ids restart at 0 for
every sample.

With `share_prompts`, samples whose `prompt_ids` are identical (a group's rollouts) are packed as one segment: the
prompt once, then each completion with position ids continuing from the prompt's length (Prefix Grouper,
arXiv 2506.05433). The model runs on that shorter sequence (`SharedPrompts`); the per-token fields the loss sees keep
the sample layout above, so nothing downstream of the logprobs changes.
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
    teacher_logprobs_T: list[float] | None = None


@dataclass(frozen=True)
class Segment:
    """A run of the model's input: a prompt and the completions that share it (none: a sample packed alone)."""

    prompt_len: int
    completion_lens: tuple[int, ...] = ()

    @property
    def num_tokens(self) -> int:
        return self.prompt_len + sum(self.completion_lens)


@dataclass
class SharedPrompts:
    """The model's input when some samples share their prompt: each shared prompt once, then its completions.

    `token_index` places each token of the micro-batch's sample layout in this sequence (a shared prompt token is
    placed once per sample), so the hidden state predicting token t of the sample layout is `token_index[t - 1]`.
    """

    input_ids: Int[Tensor, " model_tokens"]
    position_ids: Int[Tensor, " model_tokens"]
    token_index: Int[Tensor, " tokens"]
    segments: list[Segment]

    def to(self, device: torch.device) -> SharedPrompts:
        moved = {k: v.to(device) for k, v in vars(self).items() if isinstance(v, Tensor)}
        return SharedPrompts(**moved, segments=self.segments)


@dataclass
class MicroBatch:
    """Samples concatenated into one row; `seq_lens` splits it back into samples.

    `shared` (None: the model runs on `input_ids` itself) is the shorter input the model runs on instead when samples
    share their prompt; every per-token field here keeps the sample layout the loss sees.
    """

    input_ids: Int[Tensor, " tokens"]
    position_ids: Int[Tensor, " tokens"]
    loss_mask: Bool[Tensor, " tokens"]
    inference_logprobs: Float[Tensor, " tokens"]
    advantages: Float[Tensor, " tokens"]
    temperatures: Float[Tensor, " tokens"]
    seq_lens: list[int] = field(default_factory=list)
    shared: SharedPrompts | None = None
    teacher_logprobs: Float[Tensor, " tokens"] | None = None
    """Teacher logprobs in the sample layout (0 on prompts); None when the batch has none."""

    @property
    def num_tokens(self) -> int:
        """Tokens of the samples (a shared prompt counts once per sample)."""
        return int(self.input_ids.shape[0])

    @property
    def num_model_tokens(self) -> int:
        """Tokens the model runs on (a shared prompt counts once); at most `seq_len`."""
        ids = self.shared.input_ids if self.shared is not None else self.input_ids
        return int(ids.shape[0])

    @property
    def num_loss_tokens(self) -> int:
        return int(self.loss_mask.sum())

    def to(self, device: torch.device) -> MicroBatch:
        moved = {k: v.to(device) for k, v in vars(self).items() if isinstance(v, Tensor)}
        shared = self.shared.to(device) if self.shared is not None else None
        return MicroBatch(**moved, seq_lens=self.seq_lens, shared=shared)


def prepare_sample(sample: TrainingSample, seq_len: int, index: int = 0) -> PreparedSample:
    """Builds the per-token lists of one sample; raises ValueError naming the sample index on ragged fields."""
    n = len(sample.completion_ids)
    names = ["completion_mask", "completion_logprobs", "completion_temperatures"]
    teacher = sample.completion_teacher_logprobs
    for name in names + (["completion_teacher_logprobs"] if teacher is not None else []):
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
        teacher_logprobs_T=None if teacher is None else ([0.0] * prompt_len + list(teacher))[:seq_len],
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
    has_teacher = {s.teacher_logprobs_T is not None for s in samples}
    if len(has_teacher) > 1:
        raise ValueError("some samples of the batch carry teacher logprobs and others do not")
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
        teacher_logprobs=cat("teacher_logprobs_T", torch.float32) if has_teacher == {True} else None,
    )


def group_by_prompt(samples: list[TrainingSample], seq_len: int) -> list[tuple[int, list[int]]]:
    """Segments to pack, as (shared prompt length, sample indices); prompt length 0: one sample packed alone.

    Samples with identical `prompt_ids` (exact token equality: a multi-turn sample whose prefix diverged has other
    prompt ids) share their prompt when prompt and completion fit in `seq_len` untruncated; a group longer than
    `seq_len` is split first-fit decreasing into sub-groups that each fit, with the prompt once in each.
    """
    groups: dict[tuple[int, ...], list[int]] = {}
    segments: list[tuple[int, list[int]]] = []
    for i, s in enumerate(samples):
        if s.prompt_ids and s.completion_ids and len(s.prompt_ids) + len(s.completion_ids) <= seq_len:
            groups.setdefault(tuple(s.prompt_ids), []).append(i)
        elif s.prompt_ids or s.completion_ids:
            segments.append((0, [i]))
    for prompt, members in groups.items():
        lens = [len(samples[i].completion_ids) for i in members]
        for part in first_fit_decreasing(lens, seq_len - len(prompt)):
            indices = sorted(members[j] for j in part)
            segments.append((len(prompt) if len(indices) > 1 else 0, indices))
    return sorted(segments, key=lambda segment: segment[1][0])


def share_prompts(segments: list[tuple[int, list[int]]], prepared: list[PreparedSample]) -> SharedPrompts:
    """The model's input for `segments` (in order): each shared prompt once, then its completions."""
    ids: list[int] = []
    positions: list[int] = []
    index: list[int] = []
    layout: list[Segment] = []
    for prompt_len, members in segments:
        if prompt_len == 0:
            (sample,) = (prepared[i].input_ids_T for i in members)
            index += range(len(ids), len(ids) + len(sample))
            ids += sample
            positions += range(len(sample))
            layout.append(Segment(len(sample)))
            continue
        prompt_index = range(len(ids), len(ids) + prompt_len)
        ids += prepared[members[0]].input_ids_T[:prompt_len]
        positions += range(prompt_len)
        for i in members:
            completion = prepared[i].input_ids_T[prompt_len:]
            index += [*prompt_index, *range(len(ids), len(ids) + len(completion))]
            ids += completion
            positions += range(prompt_len, prompt_len + len(completion))
        layout.append(Segment(prompt_len, tuple(len(prepared[i].input_ids_T) - prompt_len for i in members)))
    return SharedPrompts(
        input_ids=torch.tensor(ids, dtype=torch.long),
        position_ids=torch.tensor(positions, dtype=torch.long),
        token_index=torch.tensor(index, dtype=torch.long),
        segments=layout,
    )


def pack_samples(samples: list[TrainingSample], seq_len: int, share: bool = False) -> list[MicroBatch]:
    """Prepares, truncates and packs the samples of one step into micro-batches of at most `seq_len` tokens the model
    runs on; with `share`, samples with identical prompts run their prompt once (module docstring)."""
    prepared = [prepare_sample(s, seq_len, i) for i, s in enumerate(samples)]
    if not share:
        kept = [p for p in prepared if p.input_ids_T]
        bins = first_fit_decreasing([len(p.input_ids_T) for p in kept], seq_len)
        return [collate([kept[i] for i in b]) for b in bins]
    segments = group_by_prompt(samples, seq_len)
    sizes = [
        prompt_len + sum(len(prepared[i].input_ids_T) - prompt_len for i in members) for prompt_len, members in segments
    ]
    micro_batches = []
    for b in first_fit_decreasing(sizes, seq_len):
        packed = [segments[j] for j in b]
        micro_batch = collate([prepared[i] for _, members in packed for i in members])
        if any(prompt_len for prompt_len, _ in packed):
            micro_batch.shared = share_prompts(packed, prepared)
        micro_batches.append(micro_batch)
    return micro_batches

"""The orchestrator → trainer batch (architecture.md §5), serialised as msgpack with msgspec."""

from __future__ import annotations

import hashlib

import msgspec


class TrainingSample(msgspec.Struct, array_like=True, gc=False):
    """One training sequence: prompt tokens, then completion tokens (model tokens masked in, environment tokens out)."""

    prompt_ids: list[int]
    completion_ids: list[int]
    completion_mask: list[bool]
    """True for tokens the model sampled (trained on); False for environment tokens and errored rollouts."""
    completion_logprobs: list[float]
    """Sampling-policy logprobs after temperature; 0.0 for environment tokens."""
    completion_temperatures: list[float]
    """Sampling temperature of each completion token."""
    advantage: float
    reward: float
    policy_step: int
    """Policy step of the weights that generated the (first token of the) completion."""
    example_id: int = -1
    env_name: str = ""
    completion_teacher_logprobs: list[float] | None = None
    """Teacher logprobs of the completion tokens (at the teacher's temperature); None without a teacher."""


class TrainingBatch(msgspec.Struct, array_like=True, gc=False):
    step: int
    samples: list[TrainingSample]


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(TrainingBatch)


def encode_batch(batch: TrainingBatch) -> bytes:
    return _encoder.encode(batch)


def decode_batch(data: bytes) -> TrainingBatch:
    return _decoder.decode(data)


def batch_digest(batch: TrainingBatch) -> str:
    """A short content hash of a batch: the trainer logs the digest of what it trained, the orchestrator of what it
    wrote, so the metrics prove which batch each step trained (docs/resume.md)."""
    return hashlib.sha256(encode_batch(batch)).hexdigest()[:16]

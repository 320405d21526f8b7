"""Teacher logprobs of a batch (on-policy distillation): the teacher server scores each sample's prompt + completion
and the logprobs of the completion tokens are stored on the sample, aligned with `completion_ids`."""

from __future__ import annotations

import asyncio

from prime_rl.client import InferenceClient, RetryPolicy
from prime_rl.orchestrator.config import TeacherConfig
from prime_rl.transport.types import TrainingBatch


def setup_teacher_client(config: TeacherConfig) -> InferenceClient:
    """The client of the teacher server(s); like the policy's, a server still failing after `retry_timeout` stops
    the run."""
    c = config.client
    retry = RetryPolicy(deadline=c.retry_timeout, key="teacher.client.retry_timeout")
    return InferenceClient(c.base_url, config.model.name, c.api_key, c.timeout, retry, remember_unreachable=True)


async def add_teacher_logprobs(
    batch: TrainingBatch, client: InferenceClient, temperature: float, max_concurrent: int
) -> dict[str, float]:
    """Fills `completion_teacher_logprobs` of every sample; returns `teacher/kl`, the mean over the model's tokens of
    `inference_lp - teacher_lp` (a sampled estimate of the policy's KL to the teacher)."""
    limit = asyncio.Semaphore(max_concurrent)

    async def score(i: int) -> None:
        sample = batch.samples[i]
        if not sample.completion_ids:
            sample.completion_teacher_logprobs = []
            return
        async with limit:
            tokens = sample.prompt_ids + sample.completion_ids
            sample.completion_teacher_logprobs = await client.score(tokens, len(sample.prompt_ids), temperature)

    await asyncio.gather(*(score(i) for i in range(len(batch.samples))))
    gaps = [
        lp - teacher_lp
        for s in batch.samples
        for lp, teacher_lp, mask in zip(
            s.completion_logprobs, s.completion_teacher_logprobs or [], s.completion_mask, strict=True
        )
        if mask
    ]
    return {"teacher/kl": sum(gaps) / max(len(gaps), 1)}

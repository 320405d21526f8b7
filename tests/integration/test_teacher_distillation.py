"""On-policy distillation at the trainer level: a tiny student samples, a different tiny teacher scores the samples
through the scoring route (the orchestrator's `add_teacher_logprobs`), the batch is packed with shared prompts, and
the default loss with only the `teacher_tau` term (advantages 0) pulls the student towards the teacher: its exact
KL to the teacher falls step by step."""

from __future__ import annotations

import asyncio
import itertools
from pathlib import Path

import httpx
import pytest
import torch
from transformers import AutoModelForCausalLM

from prime_rl.client import InferenceClient
from prime_rl.inference.app import create_app
from prime_rl.inference.config import InferenceConfig
from prime_rl.inference.server import setup_engine
from prime_rl.orchestrator.teacher import add_teacher_logprobs
from prime_rl.trainer.config import AdamWConfig, ConstantSchedulerConfig, TrainerModelConfig
from prime_rl.trainer.model import setup_model
from prime_rl.trainer.optim import setup_optimizer
from prime_rl.trainer.packing import pack_samples
from prime_rl.trainer.rl.config import LossConfig
from prime_rl.trainer.rl.loss import setup_loss_fn
from prime_rl.trainer.scheduler import setup_scheduler
from prime_rl.trainer.step import train_step
from prime_rl.transport.types import TrainingBatch, TrainingSample

PROMPTS = [[101, 202, 303], [404, 505, 606], [707, 808, 909], [1111, 1212, 1313]]


def peaked_model_dir(target: Path, noise: float) -> Path:
    """The tiny model (seed 0) with its final norm scaled by 40 (peaked next-token distributions: entropy ~1 nat
    instead of ~10), each scale multiplied by `1 + noise * N(0, 1)` (seeded): noise 0 is the student, noise 0.5 a
    teacher that differs from it (exact next-token KL ~5.3 nats)."""
    from conftest import build_tiny_model_dir

    build_tiny_model_dir(target, seed=0)
    model = AutoModelForCausalLM.from_pretrained(target, dtype=torch.float32)
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        weight = model.model.norm.weight
        weight.mul_(40.0 * (1 + noise * torch.randn(weight.shape, generator=gen)))
    model.save_pretrained(target, safe_serialization=True)
    return target


@pytest.fixture(scope="module")
def student_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return peaked_model_dir(tmp_path_factory.mktemp("student"), noise=0.0)


@pytest.fixture(scope="module")
def teacher_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return peaked_model_dir(tmp_path_factory.mktemp("teacher"), noise=0.5)


def sample(model, rollouts: int, length: int, gen: torch.Generator) -> list[TrainingSample]:
    """`rollouts` completions of every prompt at temperature 1, with their logprobs."""
    samples = []
    with torch.no_grad():
        for prompt in PROMPTS:
            for _ in range(rollouts):
                ids, logprobs = list(prompt), []
                for _ in range(length):
                    lp = torch.log_softmax(model(torch.tensor([ids])).logits[0, -1].float(), dim=-1)
                    token = int(torch.multinomial(lp.exp(), 1, generator=gen))
                    ids.append(token)
                    logprobs.append(float(lp[token]))
                samples.append(
                    TrainingSample(
                        prompt_ids=list(prompt),
                        completion_ids=ids[len(prompt) :],
                        completion_mask=[True] * length,
                        completion_logprobs=logprobs,
                        completion_temperatures=[1.0] * length,
                        advantage=0.0,
                        reward=0.0,
                        policy_step=0,
                    )
                )
    return samples


def next_token_kl(student, teacher) -> float:
    """Mean over the prompts of the exact KL(student || teacher) of the next token."""
    with torch.no_grad():
        s = torch.log_softmax(student(torch.tensor(PROMPTS)).logits[:, -1].float(), dim=-1)
        t = torch.log_softmax(teacher(torch.tensor(PROMPTS)).logits[:, -1].float(), dim=-1)
    return float((s.exp() * (s - t)).sum(-1).mean())


def test_teacher_term_pulls_the_student_towards_the_teacher(student_dir: Path, teacher_dir: Path, tmp_path):
    torch.manual_seed(0)
    student = setup_model(TrainerModelConfig(name=str(student_dir)))
    sampler = AutoModelForCausalLM.from_pretrained(student_dir, dtype=torch.float32).eval()
    teacher = AutoModelForCausalLM.from_pretrained(teacher_dir, dtype=torch.float32).eval()
    optimizer = setup_optimizer(AdamWConfig(lr=3e-5, weight_decay=0.0), student)
    scheduler = setup_scheduler(ConstantSchedulerConfig(), optimizer, None)
    loss_fn = setup_loss_fn(LossConfig(teacher_tau=1.0))
    engine = setup_engine(InferenceConfig(model={"name": str(teacher_dir)}, output_dir=tmp_path, num_threads=1))
    app = create_app(engine, engine.tokenizer, "teacher", set(), tmp_path)
    client = InferenceClient(["http://teacher/v1"], "teacher", transport=httpx.ASGITransport(app))
    gen = torch.Generator().manual_seed(0)
    kls, teacher_kls = [next_token_kl(sampler, teacher)], []
    try:
        for step in range(12):
            batch = TrainingBatch(step=step, samples=sample(sampler, rollouts=4, length=4, gen=gen))
            teacher_kls.append(asyncio.run(add_teacher_logprobs(batch, client, 1.0, 8))["teacher/kl"])
            micro_batches = pack_samples(batch.samples, 64, share=True)
            assert all(mb.shared is not None and mb.teacher_logprobs is not None for mb in micro_batches)
            train_step(student, optimizer, scheduler, micro_batches, loss_fn, 1.0, 1024)
            sampler.load_state_dict(student.state_dict())
            kls.append(next_token_kl(sampler, teacher))
    finally:
        asyncio.run(client.close())
        engine.shutdown()
    print("exact next-token KL(student || teacher) per step:", " ".join(f"{kl:.3f}" for kl in kls))
    print("sampled teacher/kl per step:", " ".join(f"{kl:.3f}" for kl in teacher_kls))
    # Measured: 5.292 5.452 5.189 4.868 4.427 4.135 3.874 3.659 3.448 3.183 2.964 2.664 2.401.
    assert kls[-1] < 0.6 * kls[0]
    assert all(later < earlier for earlier, later in itertools.pairwise(kls[2:]))

"""Per-step orchestrator metrics (one flat dict, `/`-separated names) and the console line."""

from __future__ import annotations

import statistics
from collections import defaultdict

from prime_rl.orchestrator.batch import BatchStats, Group
from prime_rl.orchestrator.difficulty import DifficultyPools
from prime_rl.orchestrator.refill import Refill, has_signal
from prime_rl.transport.types import TrainingBatch


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def _std(values: list[float]) -> float:
    return statistics.pstdev(values) if len(values) > 1 else 0.0


def reward_metrics(groups: list[Group]) -> dict[str, float]:
    """Reward mean/std overall and per environment, and mean/std of each reward function per environment."""
    rollouts = [r for g in groups for r in g.rollouts]
    out = {"reward/mean": _mean([r.reward for r in rollouts]), "reward/std": _std([r.reward for r in rollouts])}
    by_env: dict[str, list[float]] = defaultdict(list)
    by_fn: dict[str, list[float]] = defaultdict(list)
    for group in groups:
        for rollout in group.rollouts:
            by_env[group.env_name].append(rollout.reward)
            for fn, value in rollout.metrics.items():
                by_fn[f"{group.env_name}/{fn}"].append(value)
    for env, rewards in by_env.items():
        out[f"reward/{env}/mean"] = _mean(rewards)
        out[f"reward/{env}/std"] = _std(rewards)
    for key, values in by_fn.items():
        out[f"rubric/{key}/mean"] = _mean(values)
        out[f"rubric/{key}/std"] = _std(values)
    return out


def rollout_metrics(groups: list[Group]) -> dict[str, float]:
    """Lengths (first-turn prompt, completion = model tokens, turns), truncation and error rates."""
    rollouts = [r for g in groups for r in g.rollouts]
    prompt = [len(r.turns[0].prompt_ids) for r in rollouts if r.turns]
    completion = [r.completion_length for r in rollouts]
    errors = [r.error is not None for r in rollouts]
    return {
        "prompt_len/mean": _mean(prompt),
        "completion_len/mean": _mean(completion),
        "completion_len/max": float(max(completion, default=0)),
        "num_turns/mean": _mean([len(r.turns) for r in rollouts]),
        "is_truncated/mean": _mean([float(r.is_truncated) for r in rollouts]),
        "error/mean": _mean([float(e) for e in errors]),
        "error/count": float(sum(errors)),
        "groups/zero_advantage_frac": _mean([float(not has_signal(g)) for g in groups]),
    }


def refill_metrics(refill: Refill) -> dict[str, float]:
    """Zero-advantage groups generated, extra groups generated, and whether refilling gave up."""
    return {
        "refill/zero_advantage_groups": float(refill.zero_advantage),
        "refill/extra_groups": float(refill.extra),
        "refill/gave_up": float(refill.gave_up),
    }


def pool_metrics(pools: DifficultyPools) -> dict[str, float]:
    """Examples in each difficulty pool (examples never drawn are in none)."""
    return {f"pool/{name}": float(size) for name, size in pools.sizes().items()}


def batch_metrics(step: int, batch: TrainingBatch, stats: BatchStats) -> dict[str, float]:
    """Advantages, off-policy distance (step - policy step of each sample) and what the batch holds."""
    advantages = [a for row in stats.advantages_E_G for a in row]
    off_policy = [step - s.policy_step for s in batch.samples]
    return {
        "advantage/mean": _mean(advantages),
        "advantage/std": _std(advantages),
        "advantage/abs_mean": _mean([abs(a) for a in advantages]),
        "off_policy/mean": _mean([float(d) for d in off_policy]),
        "off_policy/max": float(max(off_policy, default=0)),
        "batch/samples": float(len(batch.samples)),
        "batch/loss_tokens": float(sum(sum(s.completion_mask) for s in batch.samples)),
        "batch/dropped_groups": float(stats.dropped_groups),
        "batch/truncated_samples": float(stats.truncated_samples),
    }


def format_line(step: int, max_steps: int, m: dict[str, float]) -> str:
    return (
        f"Step {step}/{max_steps} | Reward {m['reward/mean']:.4f} ± {m['reward/std']:.3f} | "
        f"Policy {m['policy/loaded']:.0f} (off-policy max {m['off_policy/max']:.0f}) | "
        f"Completion {m['completion_len/mean']:.1f} tok | Errors {100 * m['error/mean']:.0f}% | "
        f"Gen {m['perf/gen_tokens_per_s']:.1f} tok/s | "
        f"Time {m['time/step']:.1f}s (weights {m['time/wait_for_weights']:.1f}, "
        f"gen {m['time/generate']:.1f}, score {m['time/score']:.2f}, write {m['time/write']:.2f})"
    )


SAMPLE_COLUMNS = ["step", "env", "example_id", "prompt", "completion", "reward"]
"""Columns of the sample-rollouts table (`[orchestrator.wandb] samples_interval`)."""


def _chat_text(messages: list[dict]) -> str:
    return "\n".join(f"{m['role']}: {m.get('content') or ''}" for m in messages)


def sample_rows(step: int, groups: list[Group], limit: int) -> list[list]:
    """The first `limit` rollouts of the step as rows of `SAMPLE_COLUMNS` (messages as `role: content` lines)."""
    rollouts = [r for g in groups for r in g.rollouts][:limit]
    return [
        [step, r.env_name, r.example_id, _chat_text(r.prompt), _chat_text(r.completion), r.reward] for r in rollouts
    ]

"""Evaluation metrics of scored rollouts: avg@n, unbiased pass@k (Chen et al., 2021), lengths, truncation, errors."""

from __future__ import annotations

import math

from prime_rl.environments.types import Rollout


def pass_at_k(n: int, c: int, k: int) -> float:
    """Probability that at least one of `k` samples drawn without replacement from `n` (of which `c` pass) passes:
    `1 - C(n-c, k) / C(n, k)`, as the numerically stable product of Chen et al. (2021), "Evaluating Large Language
    Models Trained on Code", figure 3."""
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"pass@k needs 0 <= c <= n and 1 <= k <= n (n={n}, c={c}, k={k})")
    if n - c < k:
        return 1.0
    return 1.0 - math.prod(1.0 - k / i for i in range(n - c + 1, n + 1))


def k_values(n: int) -> list[int]:
    """The k of the reported pass@k: powers of two below `n`, and `n`."""
    ks = [1 << i for i in range(n.bit_length()) if 1 << i < n]
    return [*ks, n]


def group_metrics(groups: list[list[Rollout]], pass_threshold: float = 1.0) -> dict[str, float]:
    """Metrics of one environment's groups (one group of `n` rollouts per example, errored rollouts score 0):
    `avg@n`, `pass@k` for every k of `k_values(n)`, `completion_len`, `truncated`, `errored`, `num_examples`,
    and the mean of every reward function's metric."""
    if not groups or not groups[0]:
        raise ValueError("no rollouts to summarise")
    n = len(groups[0])
    if any(len(g) != n for g in groups):
        raise ValueError(f"groups have different sizes: {sorted({len(g) for g in groups})}")
    rollouts = [r for g in groups for r in g]
    out = {f"avg@{n}": sum(r.reward for r in rollouts) / len(rollouts)}
    for k in k_values(n):
        passes = [pass_at_k(n, sum(r.reward >= pass_threshold for r in g), k) for g in groups]
        out[f"pass@{k}"] = sum(passes) / len(passes)
    out["completion_len"] = sum(r.completion_length for r in rollouts) / len(rollouts)
    out["truncated"] = sum(r.is_truncated for r in rollouts) / len(rollouts)
    out["errored"] = sum(r.error is not None for r in rollouts) / len(rollouts)
    out["num_examples"] = float(len(groups))
    names = dict.fromkeys(name for r in rollouts for name in r.metrics)
    for name in names:
        values = [r.metrics[name] for r in rollouts if name in r.metrics]
        out[f"reward/{name}"] = sum(values) / len(values)
    return out

"""Weighted reward functions. Each function's value is logged as a metric; the reward is their weighted sum.

A reward function is `fn(prompt, completion, answer, info) -> float`, sync or async. It may declare only the
arguments it needs (`def fmt(completion, **kwargs)` or `def exact(completion, answer)`); they are passed by name.
`prompt` and `completion` are chat messages (`completion[-1]["content"]` is the last model reply).
"""

from __future__ import annotations

import inspect
import math
import traceback
from collections.abc import Callable
from typing import Any

from prime_rl.environments.types import Example, Rollout

REWARD_ARGS = ("prompt", "completion", "answer", "info")

RewardFn = Callable[..., Any]
"""`fn(prompt: list[dict], completion: list[dict], answer: str, info: dict) -> float` (or an awaitable of it)."""


class RewardError(Exception):
    """A reward function raised or returned something that is not a finite number."""


def describe_exception(e: BaseException) -> str:
    """`Type: message (file:line)` of the innermost frame, short enough for a log line."""
    frames = traceback.extract_tb(e.__traceback__)
    where = f" ({frames[-1].filename.rsplit('/', 1)[-1]}:{frames[-1].lineno})" if frames else ""
    return f"{type(e).__name__}: {e}{where}"


def _accepted_args(fn: RewardFn) -> tuple[str, ...]:
    params = inspect.signature(fn).parameters.values()
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return REWARD_ARGS
    names = {p.name for p in params}
    unknown = [
        p.name
        for p in params
        if p.name not in REWARD_ARGS and p.default is inspect.Parameter.empty and p.kind is not p.VAR_POSITIONAL
    ]
    if unknown:
        raise TypeError(f"reward function `{fn.__name__}` has arguments {unknown}; allowed: {list(REWARD_ARGS)}")
    return tuple(a for a in REWARD_ARGS if a in names)


class Rubric:
    """Reward functions with weights (default 1.0 each). A weight of 0 logs the function as a metric only."""

    def __init__(self, funcs: list[RewardFn], weights: list[float] | None = None):
        weights = [1.0] * len(funcs) if weights is None else list(weights)
        if len(weights) != len(funcs):
            raise ValueError(f"Rubric got {len(funcs)} reward functions but {len(weights)} weights")
        names = [fn.__name__ for fn in funcs]
        if len(set(names)) != len(names):
            raise ValueError(f"Rubric reward function names must be unique (they name the metrics): {names}")
        self.funcs, self.weights = list(funcs), weights
        self._args = [_accepted_args(fn) for fn in funcs]

    async def score(self, rollout: Rollout, example: Example) -> tuple[float, dict[str, float]]:
        """Returns `(weighted reward, {function name: value})`; raises RewardError naming the failing function."""
        values = {
            "prompt": rollout.prompt,
            "completion": rollout.completion,
            "answer": example.answer,
            "info": example.info,
        }
        metrics: dict[str, float] = {}
        for fn, args in zip(self.funcs, self._args, strict=True):
            try:
                value = fn(**{a: values[a] for a in args})
                if inspect.isawaitable(value):
                    value = await value
                value = float(value)
            except Exception as e:
                raise RewardError(f"reward function `{fn.__name__}` failed: {describe_exception(e)}") from e
            if not math.isfinite(value):
                raise RewardError(f"reward function `{fn.__name__}` returned {value}")
            metrics[fn.__name__] = value
        reward = sum(w * metrics[fn.__name__] for fn, w in zip(self.funcs, self.weights, strict=True))
        return reward, metrics

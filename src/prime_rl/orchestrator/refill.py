"""Batches that carry signal: groups whose rewards are all equal have zero advantage (no gradient, trainer time
spent for nothing); they are dropped and fresh groups generated in their place, up to `max_extra` per step.

Rounds run one after another and each asks for exactly the groups still missing, so which examples are drawn, and
the request seeds (groups numbered on from the first round), are a fixed function of the rewards: a resumed step
repeats them. Giving up, the batch is completed with the zero-advantage groups in generation order, so a batch is
never smaller than without refill.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from prime_rl.environments.types import Example
from prime_rl.orchestrator.batch import Group, baseline_rewards
from prime_rl.orchestrator.generate import Generation

SampleFn = Callable[[int], list[tuple[str, Example]]]
"""`sample(num_examples)`: the next examples of the buffer."""
GenerateFn = Callable[[list[tuple[str, Example]], int], Awaitable[Generation]]
"""`generate(examples, first_group)`: the scored groups of `examples`, seeded from group number `first_group`."""


@dataclass
class Refill:
    """What refilling decided for one step."""

    groups: list[Group]
    """The batch's groups: those with signal in generation order, then (after giving up) zero-advantage ones."""
    zero_advantage: int
    """Generated groups whose rewards were all equal (first round and refills)."""
    extra: int
    """Groups generated beyond the first round."""
    gave_up: bool
    """Whether `max_extra` was reached before every group of the batch carried signal."""


def has_signal(group: Group) -> bool:
    """Whether the group's rewards (as the advantage baseline sees them) differ: otherwise every advantage is 0."""
    rewards = baseline_rewards(group.rollouts)
    return max(rewards) - min(rewards) >= 1e-8


async def refill(
    first: Generation, sample: SampleFn, generate: GenerateFn, max_extra: int
) -> tuple[Generation, Refill]:
    """Drops the zero-advantage groups of `first` and generates replacements until the batch has as many groups
    with signal as `first` has groups, or `max_extra` extra groups were generated. Returns every generated group
    (for the reward metrics and the difficulty pools) and the batch's groups."""
    needed, generation, extra = len(first.groups), first, 0
    kept = [g for g in first.groups if has_signal(g)]
    while len(kept) < needed and extra < max_extra:
        count = min(needed - len(kept), max_extra - extra)
        more = await generate(sample(count), needed + extra)
        kept += [g for g in more.groups if has_signal(g)]
        generation, extra = generation.merged(more), extra + count
    zero = [g for g in generation.groups if not has_signal(g)]
    groups = kept + zero[: needed - len(kept)]
    return generation, Refill(groups, len(zero), extra, gave_up=len(kept) < needed)

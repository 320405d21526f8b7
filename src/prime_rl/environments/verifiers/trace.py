"""A verifiers v1 trace as our `Turn`s: each trainable branch of its message graph (a root-to-leaf path, one
training sample in verifiers too) is one turn whose completion starts at the first sampled token. Tokens between
two sampled replies (tool results, user messages, template scaffold) keep mask False and logprob 0, so
`rollout_to_samples` gives one sample per branch: a turn whose prompt did not extend the previous tokens forked the
graph and is a branch of its own."""

from __future__ import annotations

from typing import TYPE_CHECKING

from prime_rl.environments.types import Turn

if TYPE_CHECKING:
    from verifiers.v1 import Trace

    from prime_rl.client import Completion


def branch_turn(
    token_ids: list[int], sampled_mask: list[bool], logprobs: list[float], temperature: float, policy_step: int,
    finish_reason: str,
) -> Turn | None:  # fmt: skip
    """The `Turn` of one branch's token stream; None when no token of it was sampled."""
    if True not in sampled_mask:
        return None
    start = sampled_mask.index(True)
    return Turn(
        prompt_ids=list(token_ids[:start]),
        completion_ids=list(token_ids[start:]),
        completion_logprobs=[lp if m else 0.0 for lp, m in zip(logprobs[start:], sampled_mask[start:], strict=True)],
        completion_mask=list(sampled_mask[start:]),
        temperature=temperature,
        policy_step=policy_step,
        finish_reason=finish_reason,
    )


def trace_turns(trace: Trace, completions: list[Completion], temperature: float) -> list[Turn]:
    """The turns of every trainable branch of `trace`; `completions` are the replies our server gave the trace (the
    oldest policy step among them is the turns' policy step, the last finish reason theirs)."""
    policy_step = min((c.policy_step for c in completions), default=0)
    finish_reason = completions[-1].finish_reason if completions else "stop"
    turns = []
    for branch in trace.branches:
        if not branch.trainable:
            continue
        turn = branch_turn(
            branch.token_ids, branch.sampled_mask, branch.logprobs, temperature, policy_step, finish_reason
        )
        if turn is not None:
            turns.append(turn)
    return turns

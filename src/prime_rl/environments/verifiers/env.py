"""`VerifiersEnv`: a verifiers v1 taskset run unchanged as one of our environments.

The taskset's tasks are the examples; a rollout is one verifiers episode (`SingleAgentEnv` by default, or the
taskset's own `Env`) whose harness (default `null`: plain chat, tools through MCP) runs as a local subprocess and
talks to the verifiers interception server, which samples through `PrimeRLClient` from our inference server. The
episode's traces become our turns (`trace.py`) and its rewards our reward: verifiers scores, the rubric is not ours.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING, Any

from verifiers.v1 import ModelContext, TrainClientConfig
from verifiers.v1.dialects.chat import message_to_wire
from verifiers.v1.utils.loaders import load_environment, resolve_env_config

from prime_rl.environments.base import Environment
from prime_rl.environments.types import Example, Rollout, SamplingConfig
from prime_rl.environments.verifiers.client import PrimeRLClient
from prime_rl.environments.verifiers.trace import trace_turns

if TYPE_CHECKING:
    from verifiers.v1 import Episode, Task, Trace

    from prime_rl.client import InferenceClient

ENDPOINT = TrainClientConfig(base_url="http://prime-rl.invalid/v1", api_key_var="PRIME_RL_VERIFIERS_API_KEY")
"""The endpoint the episode's agent is configured with (a train endpoint: the interception server then asks the
client for whole responses, also for streamed requests); its client there is replaced by
`PrimeRLClient` (nothing is ever sent there)."""


def task_prompt(task: Task) -> list[dict]:
    """The task's opening messages (system prompt first) as chat messages."""
    data = task.data
    system = [{"role": "system", "content": data.system_prompt}] if data.system_prompt else []
    if data.prompt is None:
        return system
    if isinstance(data.prompt, str):
        return [*system, {"role": "user", "content": data.prompt}]
    return [*system, *(message_to_wire(m) for m in data.prompt)]


def task_example(index: int, task: Task) -> Example:
    answer = getattr(task.data, "answer", None)
    return Example(
        example_id=index,
        prompt=task_prompt(task),
        answer="" if answer is None else str(answer),
        info=task.data.model_dump(mode="json", exclude_defaults=True),
    )


def episode_error(episode: Episode, traces: list[Trace]) -> str | None:
    if episode.ok:
        return None
    errors = [*episode.errors, *(e for t in traces for e in t.errors)]
    return "; ".join(f"{e.type}: {e.message}" for e in errors) or "verifiers episode not ok"


class VerifiersEnv(Environment):
    """A verifiers v1 taskset (by its id) with an agent harness; see the module docstring."""

    def __init__(
        self, taskset_id: str, taskset_args: dict[str, Any], harness: dict[str, Any], max_examples: int | None = None
    ):
        self.name = taskset_id
        self.rubric = None
        config = resolve_env_config(
            {
                "taskset": {"id": taskset_id, **taskset_args},
                "agent": {"harness": harness, "runtime": {"type": "subprocess"}},
                "interception": {"type": "server"},
            }
        )
        self.vf_env = load_environment(config)
        tasks = self.vf_env.taskset
        if not tasks.bounded and max_examples is None:
            raise ValueError(f"verifiers taskset `{taskset_id}` yields tasks forever: set `max_examples` in args")
        self._tasks = [task for _, task in zip(range(max_examples or 2**62), tasks, strict=False)]
        self._examples = [task_example(i, t) for i, t in enumerate(self._tasks)]
        self._bridge: PrimeRLClient | None = None
        self._serving: contextlib.AsyncExitStack | None = None
        self._lock = asyncio.Lock()

    def dataset(self) -> list[Example]:
        return self._examples

    def eval_dataset(self) -> list[Example]:
        return []

    async def _bridge_for(self, client: InferenceClient, sampling: SamplingConfig) -> PrimeRLClient:
        """Starts the verifiers serving resources once (interception server, shared tools) with our client in it."""
        async with self._lock:
            if self._serving is None:
                self._bridge = PrimeRLClient(client, sampling, getattr(self, "tokenizer", None))
                stack = contextlib.AsyncExitStack()
                await stack.enter_async_context(self.vf_env.serving())
                self.vf_env._interception.clients[ENDPOINT.model_dump_json()] = self._bridge
                self._serving = stack
        self._bridge.inference, self._bridge.sampling = client, sampling
        return self._bridge

    async def rollout(
        self, client: InferenceClient, example: Example, sampling: SamplingConfig, seed: int | None = None
    ) -> Rollout:
        bridge = await self._bridge_for(client, sampling)
        episode = await self.vf_env.run_episode(self._tasks[example.example_id], ModelContext(client.model, ENDPOINT))
        completions = {t.id: bridge.completions.pop(t.id, []) for t in episode.traces}
        traces = [t for t in episode.traces if t.agent.trainable]
        completion = [message_to_wire(m) for m in traces[0].messages[len(example.prompt) :]] if traces else []
        return Rollout(
            example_id=example.example_id,
            env_name=self.name,
            prompt=example.prompt,
            completion=completion,
            turns=[turn for t in traces for turn in trace_turns(t, completions[t.id], sampling.temperature)],
            reward=sum(t.reward for t in traces),
            metrics={
                **{k: r.score for t in traces for k, r in t.rewards.items() if r is not None},
                **{k: v for t in traces for k, v in t.metrics.items() if v is not None},
            },
            is_truncated=any(t.is_truncated for t in traces),
            error=episode_error(episode, traces),
        )

    async def score(self, rollout: Rollout, example: Example) -> Rollout:
        """The episode scored itself (its rewards are in `rollout`); an errored one gets reward 0."""
        if rollout.error is not None:
            rollout.reward = 0.0
        return rollout

    async def close(self) -> None:
        """Stops the interception server and shared tools (left to the event loop's shutdown, they log errors)."""
        if self._serving is not None:
            await self._serving.aclose()
            self._serving = None

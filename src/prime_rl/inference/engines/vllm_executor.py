"""vLLM's engine core and workers die with the server. vLLM spawns them with multiprocessing, so none of our code runs
there but the executor class the server hands to `AsyncLLM`: its set-up, in the engine core, arms
`lifecycle.watch_launcher` on the server, which SIGKILLs the workers and exits once the server is gone, however it
ended (the out-of-memory killer's SIGKILL, or `rl`'s death). vLLM itself ends a worker only through a pipe the worker
reads after its start-up, and nothing ended the engine core."""

from __future__ import annotations

import os

from vllm.config import VllmConfig
from vllm.v1.executor.abstract import Executor
from vllm.v1.executor.multiproc_executor import MultiprocExecutor
from vllm.v1.executor.uniproc_executor import UniProcExecutor

from prime_rl.utils.lifecycle import LAUNCHER_PID_ENV, watch_launcher


class _DiesWithServer:
    def _init_executor(self) -> None:
        watch_launcher("vLLM engine core")
        super()._init_executor()  # type: ignore[misc]


class MultiprocExecutorDyingWithServer(_DiesWithServer, MultiprocExecutor):
    """vLLM's executor of worker processes (the CPU build's, and tensor parallelism's)."""


class UniProcExecutorDyingWithServer(_DiesWithServer, UniProcExecutor):
    """vLLM's executor running the model in the engine core (one GPU)."""


def executor_dying_with_server(vllm_config: VllmConfig) -> type[Executor]:
    """The executor vLLM would pick for `vllm_config`, set up to die with this process (Ray's is left as it is), which
    becomes the launcher its engine core follows."""
    os.environ[LAUNCHER_PID_ENV] = str(os.getpid())
    base = Executor.get_class(vllm_config)
    ours = {MultiprocExecutor: MultiprocExecutorDyingWithServer, UniProcExecutor: UniProcExecutorDyingWithServer}
    return ours.get(base, base)

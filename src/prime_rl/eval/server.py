"""The inference server an evaluation talks to: a running one, or one started (and stopped) here as a child process
with the launcher's process helpers; the client to it, and switching the served policy between `weights/step_N`."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from prime_rl.client import InferenceClient, RetryPolicy
from prime_rl.eval.config import EvalConfig
from prime_rl.inference.config import InferenceConfig
from prime_rl.launcher.processes import Child, ProcessSpec, tail
from prime_rl.launcher.supervise import wait_healthy
from prime_rl.run_dir import RunDir, step_dirs
from prime_rl.utils.config import ConfigError, RunError
from prime_rl.utils.config.dump import config_toml
from prime_rl.utils.fs import atomic_write_text
from prime_rl.utils.net import free_port


def weights_root(weights_dir: Path) -> Path:
    """`weights_dir` itself when it is a `weights/` directory, else `weights_dir/weights`."""
    return weights_dir if weights_dir == RunDir(weights_dir.parent).weights else RunDir(weights_dir).weights


def policy_targets(config: EvalConfig) -> list[tuple[str, Path | None]]:
    """`[(label, weight dir or None for the base model)]` in evaluation order; raises naming a missing step."""
    targets: list[tuple[str, Path | None]] = []
    if config.weights_dir is None or config.eval_base:
        targets.append(("base", None))
    if config.weights_dir is None:
        return targets
    if not config.weights_dir.is_dir():
        raise ConfigError(f"weights_dir `{config.weights_dir}` is not a directory")
    root = weights_root(config.weights_dir)
    available = step_dirs(root)
    steps = sorted(available) if config.steps is None else config.steps
    missing = [s for s in steps if s not in available]
    if missing:
        raise ConfigError(
            f"weights_dir: no complete (STABLE) weights/step_N for steps {missing} under {root} "
            f"(available: {sorted(available)})"
        )
    if not steps and not targets:
        raise ConfigError(f"weights_dir: no complete (STABLE) weights/step_N under {root}")
    return targets + [(f"step_{s}", available[s]) for s in steps]


def served_root(config: EvalConfig) -> Path:
    """The self-started server's `output_dir`: it only accepts weight directories below it."""
    if config.weights_dir is None:
        return config.output_dir
    return weights_root(config.weights_dir).parent


def server_config(config: EvalConfig, port: int) -> InferenceConfig:
    """`[inference]` with what `eval` fills in: the port, and (unless set) the run of `weights_dir` as `output_dir`."""
    inference = config.inference
    update: dict = {"server": inference.server.model_copy(update={"port": port})}
    if "output_dir" not in inference.model_fields_set:
        update["output_dir"] = served_root(config).resolve()
    return inference.model_copy(update=update)


def write_server_config(config: InferenceConfig, path: Path) -> Path:
    atomic_write_text(path, config_toml(config, "inference"))
    return path


@contextmanager
def inference_server(config: EvalConfig) -> Iterator[str]:
    """Yields the base URL (`.../v1`) of a healthy server; a self-started one is stopped on exit."""
    if not config.own_server:
        yield config.client.base_url[0].rstrip("/")  # the client waits for its health
        return
    inference = server_config(config, config.inference.server.port or free_port())
    run = RunDir(config.output_dir)
    with started_server(
        inference, run.eval_server(".toml"), run.eval_server(".log"), config.client.health_timeout
    ) as url:
        yield url


@contextmanager
def started_server(
    inference: InferenceConfig, config_path: Path, log_path: Path, health_timeout: float
) -> Iterator[str]:
    """An inference server on `inference` (written to `config_path`) as a child process logging to `log_path`; yields
    its base URL (`.../v1`) once healthy and stops it on exit."""
    path = write_server_config(inference, config_path)
    child = Child(ProcessSpec("inference", "prime_rl.inference.cli", path, log_path, inference.num_threads))
    try:
        base_url = f"http://127.0.0.1:{inference.server.port}/v1"
        dead = wait_healthy(base_url, health_timeout, [child])
        if dead is not None:
            lines = "\n  | ".join(tail(log_path, 20))
            raise RunError(f"the inference server exited with code {dead.poll()}; {log_path}:\n  | {lines}")
        yield base_url
    finally:
        child.stop()


def setup_client(config: EvalConfig, base_url: str) -> InferenceClient:
    """The client of the evaluated server, retrying a failing request for `client.retry_timeout` seconds; a server
    still failing then ends the evaluation (`remember_unreachable`), as it ends an `rl` run."""
    c = config.client
    retry = RetryPolicy(deadline=c.retry_timeout, key="client.retry_timeout")
    return InferenceClient([base_url], config.model.name, c.api_key, c.timeout, retry, remember_unreachable=True)


async def load_policy(client: InferenceClient, weight_dir: Path | None) -> int:
    """Serves `weight_dir` (`/update_weights`) or the base model (`/reload_weights`); returns the served policy step."""
    return await client.reload_weights() if weight_dir is None else await client.update_weights(weight_dir)

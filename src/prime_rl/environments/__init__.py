"""Environments: datasets of prompts, rollouts through the inference server, and rubrics (architecture.md §7)."""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from pathlib import Path
from typing import Any

from prime_rl.client import Completion, InferenceClient, InferenceError
from prime_rl.environments.base import Environment
from prime_rl.environments.multi_turn import MultiTurnEnv
from prime_rl.environments.rubric import RewardError, Rubric
from prime_rl.environments.single_turn import SingleTurnEnv
from prime_rl.environments.tool_env import ToolEnv
from prime_rl.environments.tools import tool_schema
from prime_rl.environments.types import Example, Rollout, SamplingConfig, Turn
from prime_rl.environments.verifiers import (
    is_verifiers_import_error,
    load_verifiers_env,
    v1_taskset_class,
    verifiers_import_error,
)
from prime_rl.utils.config import ConfigError, bind_kwargs

BUILTINS = {
    "reverse-text": "prime_rl.environments.reverse_text",
    "one-word": "prime_rl.environments.one_word",
    "guess-number": "prime_rl.environments.guess_number",
    "calculator": "prime_rl.environments.calculator",
}
DATA_READERS = {"dataset": "prime_rl.environments.hf_dataset"}
"""Built-in environments over user data (they need a `path` argument), beside the generated tasks of `BUILTINS`."""

__all__ = [
    "BUILTINS",
    "DATA_READERS",
    "Completion",
    "Environment",
    "Example",
    "InferenceClient",
    "InferenceError",
    "MultiTurnEnv",
    "RewardError",
    "Rollout",
    "Rubric",
    "SamplingConfig",
    "SingleTurnEnv",
    "ToolEnv",
    "Turn",
    "load_environment",
    "tool_schema",
]


def _import_env_module(name: str):
    """A built-in, a `.py` file, or an importable module (`my-env` is also tried as `my_env`)."""
    key = name.lower().replace("_", "-")
    if key in BUILTINS or key in DATA_READERS:
        return importlib.import_module({**BUILTINS, **DATA_READERS}[key])
    if name.endswith(".py"):
        path = Path(name)
        if not path.is_file():
            raise ConfigError(f"environment `{name}`: file not found")
        spec = importlib.util.spec_from_file_location(f"prime_rl_user_env_{path.stem}", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    candidates = list(dict.fromkeys([name, name.replace("-", "_")]))
    for candidate in candidates:
        try:
            return importlib.import_module(candidate)
        except (ModuleNotFoundError, AttributeError) as e:
            if is_verifiers_import_error(e):
                raise verifiers_import_error(name, candidate, e) from None
            if isinstance(e, AttributeError):
                raise
            if e.name is None or not candidate.startswith(e.name):  # the module exists, one of its imports does not
                raise ConfigError(f"environment `{name}`: importing module `{candidate}` failed: {e}") from e
    builtins = ", ".join(BUILTINS)
    raise ConfigError(
        f"environment `{name}` is not a built-in ({builtins}) or `dataset` and no module {' or '.join(candidates)} "
        "could be imported (install it, or give a path to a .py file; a verifiers taskset is an installed package too)"
    )


def load_environment(name_or_import_path: str, **args) -> Environment:
    """Loads a built-in environment by name, calls `load_environment(**args)` of a user module / `.py` file, or adapts
    an installed verifiers v1 taskset (a module exporting a `verifiers.v1.Taskset`, `environments/verifiers/`)."""
    module = _import_env_module(name_or_import_path)
    factory = getattr(module, "load_environment", None)
    if not callable(factory) and v1_taskset_class(module) is not None:
        return load_verifiers_env(name_or_import_path, args)
    if not callable(factory):
        raise ConfigError(f"environment `{name_or_import_path}`: module `{module.__name__}` has no load_environment()")
    bind_kwargs(factory, f"{module.__name__}.load_environment", args, n_positional=0)
    try:
        env = factory(**args)
    except AttributeError as e:
        if is_verifiers_import_error(e):
            raise verifiers_import_error(name_or_import_path, module.__name__, e) from None
        raise
    if not isinstance(env, Environment) and type(env).__module__.split(".")[0] == "verifiers":
        raise verifiers_import_error(name_or_import_path, module.__name__, TypeError(type(env).__name__))
    if not isinstance(env, Environment):
        raise ConfigError(
            f"environment `{name_or_import_path}`: load_environment() returned {type(env).__name__}, "
            "expected a prime_rl.environments.Environment"
        )
    return env


def load_environments(env_configs: list[Any], tokenizer: Any) -> dict[str, Environment]:
    """`{name: environment}` of `[[env]]` tables (`id`, `args`, optional `name`) in config order, each given the
    policy's tokenizer; a table's `name` wins over the environment's own, and two equal names are an error."""
    envs: dict[str, Environment] = {}
    for env_config in env_configs:
        env = load_environment(env_config.id, **env_config.args)
        env.setup(tokenizer)
        name = env_config.name or env.name
        if name in envs:
            raise ConfigError(f"two environments are named `{name}` (id {env_config.id!r}): set `name` in [[env]]")
        envs[name] = env
    return envs

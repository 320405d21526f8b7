"""verifiers environments (the optional `.[verifiers]` extra, verifiers>=0.4,<0.5): an `[[env]]` id naming an
installed verifiers v1 taskset runs through `VerifiersEnv`. Only this package imports verifiers."""

from __future__ import annotations

import importlib.metadata
from types import ModuleType
from typing import Any

from prime_rl.utils.config import ConfigError

INSTALL_HINT = "pip install -e '.[verifiers]' (verifiers>=0.4,<0.5)"
V01_API = ("load_environment", "SingleTurnEnv", "MultiTurnEnv", "Rubric")
"""Names of the verifiers 0.1.x API (gone since 0.2, which moved to `verifiers.v1`)."""


def verifiers_version() -> str | None:
    """The installed verifiers version, or None."""
    try:
        return importlib.metadata.version("verifiers")
    except importlib.metadata.PackageNotFoundError:
        return None


def is_verifiers_import_error(e: BaseException) -> bool:
    """Whether `e` is a failed import of verifiers itself or a 0.1.x name (`vf.SingleTurnEnv`) missing from it."""
    if isinstance(e, ModuleNotFoundError):
        return e.name is not None and (e.name == "verifiers" or e.name.startswith("verifiers."))
    return isinstance(e, AttributeError) and getattr(e, "name", None) in V01_API and "verifiers" in str(e)


def verifiers_import_error(env_id: str, module: str, e: BaseException) -> ConfigError:
    """The one-line error of an environment module that needs a verifiers it cannot have."""
    version = verifiers_version()
    if version is None:
        return ConfigError(
            f"environment `{env_id}`: module `{module}` needs verifiers, which is not installed: {INSTALL_HINT}"
        )
    return ConfigError(
        f"environment `{env_id}`: module `{module}` uses the verifiers 0.1.x API ({e}); the installed verifiers "
        f"{version} has only the v1 API (`verifiers.v1`: tasksets and harnesses), the one prime-rl supports"
    )


def v1_taskset_class(module: ModuleType) -> type | None:
    """The `verifiers.v1.Taskset` subclass `module` exports in `__all__` (how verifiers finds a taskset), else None."""
    if verifiers_version() is None:
        return None
    from verifiers.v1 import Taskset

    for name in getattr(module, "__all__", ()):
        obj = getattr(module, name, None)
        if isinstance(obj, type) and issubclass(obj, Taskset) and obj is not Taskset:
            return obj
    return None


def load_verifiers_env(env_id: str, args: dict[str, Any]):
    """A `VerifiersEnv` of the taskset `env_id`. `args` are the taskset's config fields, plus `harness` (a verifiers
    harness config, default `{id = "null"}`) and `max_examples` (needed for a taskset that never ends)."""
    from prime_rl.environments.verifiers.env import VerifiersEnv

    args = dict(args)
    harness = args.pop("harness", {"id": "null"})
    max_examples = args.pop("max_examples", None)
    return VerifiersEnv(env_id, args, harness, max_examples)

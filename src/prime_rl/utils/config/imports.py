"""`import_path` plug-ins: import `pkg.module.fn` (the working directory is importable) and check that `kwargs` bind
to its signature, each failure a ConfigError saying whether the module, the attribute or the call is wrong."""

from __future__ import annotations

import difflib
import importlib
import inspect
import os
import sys
from typing import Any

from prime_rl.utils.config.errors import ConfigError


def import_object(path: str, what: str = "object") -> Any:
    """Imports `pkg.module.attr` or `pkg.module:attr`; the working directory is importable. Raises ConfigError."""
    # A module the user just wrote must be found even if this directory was scanned before.
    importlib.invalidate_caches()
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    module_name, sep, attr = path.partition(":") if ":" in path else path.rpartition(".")
    if not sep or not module_name or not attr:
        raise ConfigError(f"import_path `{path}` must look like `pkg.module.fn` or `pkg.module:fn`")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        if e.name is not None and not (module_name == e.name or module_name.startswith(f"{e.name}.")):
            raise ConfigError(f"import_path `{path}`: importing module `{module_name}` failed: {e}") from e
        raise ConfigError(f"import_path `{path}`: module `{module_name}` not found ({e})") from None
    except Exception as e:
        raise ConfigError(
            f"import_path `{path}`: importing module `{module_name}` failed: {type(e).__name__}: {e}"
        ) from e
    if not hasattr(module, attr):
        names = [n for n in dir(module) if not n.startswith("_")]
        hint = difflib.get_close_matches(attr, names, n=3)
        near = f" (close names: {', '.join(hint)})" if hint else ""
        raise ConfigError(f"import_path `{path}`: module `{module_name}` has no attribute `{attr}`{near}")
    obj = getattr(module, attr)
    if what == "function" and not callable(obj):
        raise ConfigError(f"import_path `{path}`: `{attr}` is not callable")
    return obj


def bind_kwargs(fn: Any, path: str, kwargs: dict, n_positional: int = 1) -> None:
    """Checks that `fn(<n_positional args>, **kwargs)` binds to the signature; raises ConfigError naming `path`."""
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return
    try:
        sig.bind(*([None] * n_positional), **kwargs)
    except TypeError as e:
        raise ConfigError(
            f"import_path `{path}`: kwargs {kwargs} do not fit signature {fn.__name__}{sig}: {e}"
        ) from None

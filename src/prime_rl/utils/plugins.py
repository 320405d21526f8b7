"""The `type = "custom"` escape hatch shared by every plug-in table (`[loss]`, `[advantage]`): one config, one loader.

`load_plugin` imports `import_path`, checks that `kwargs` bind to its signature (ConfigError naming the module, the
attribute or the signature), and wraps the function so that each call's result is validated by the plug-in's checker.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal, TypeVar

from pydantic import Field

from prime_rl.utils.config import BaseConfig, bind_kwargs, import_object

In = TypeVar("In")
Out = TypeVar("Out")

Check = Callable[[object, In, str], Out]
"""`check(returned, inputs, name) -> Out`: validates a plug-in's return value, raising an error naming `name`."""


class CustomPluginConfig(BaseConfig):
    """A user function `fn(inputs, **kwargs)` imported from `import_path`."""

    type: Literal["custom"] = "custom"
    """Plug-in kind; `custom` imports `import_path`."""
    import_path: str
    """Import path of the function: `pkg.module.fn` or `pkg.module:fn` (the working directory is importable)."""
    kwargs: dict[str, Any] = Field(default_factory=dict)
    """Keyword arguments passed to the function after the inputs."""

    def load_plugin(self, check: Check[In, Out]) -> Callable[[In], Out]:
        """The imported function with `kwargs` bound and every result checked; raises ConfigError on a bad path."""
        fn = import_object(self.import_path, "function")
        bind_kwargs(fn, self.import_path, self.kwargs)
        return checked(fn, self.import_path, dict(self.kwargs), check)


def checked(fn: Callable[..., object], name: str, kwargs: dict[str, Any], check: Check[In, Out]) -> Callable[[In], Out]:
    """`fn(inputs, **kwargs)` whose result goes through `check(result, inputs, name)`."""

    def plugin(inputs: In) -> Out:
        return check(fn(inputs, **kwargs), inputs, name)

    plugin.__qualname__ = name
    return plugin

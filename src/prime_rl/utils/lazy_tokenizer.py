"""The policy's tokenizer loaded on first use: the orchestrator hands it to environments (only multi-turn ones use
it, and loading it imports ~100 MiB of transformers), and the RL trainer needs it only to export weights (~0.1 GiB
resident while it trains otherwise)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


class LazyTokenizer:
    """Stands for `AutoTokenizer.from_pretrained(path)`: every attribute, call and `len` loads it (once) and goes to
    it; `load()` returns the tokenizer itself."""

    def __init__(self, path: str, loader: Callable[[], Any] | None = None):
        self._path = path
        self._loader = loader
        """Loads it instead of `AutoTokenizer.from_pretrained(path)` (e.g. the trainer's `setup_tokenizer`)."""
        self._tokenizer: Any = None

    def load(self) -> Any:
        if self._tokenizer is None:
            if self._loader is not None:
                self._tokenizer = self._loader()
            else:
                from transformers import AutoTokenizer

                self._tokenizer = AutoTokenizer.from_pretrained(self._path)
        return self._tokenizer

    @property
    def loaded(self) -> bool:
        return self._tokenizer is not None

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name in (
            "_path",
            "_loader",
            "_tokenizer",
        ):  # copy/pickle probes, or not yet initialised
            raise AttributeError(name)
        return getattr(self.load(), name)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.load()(*args, **kwargs)

    def __len__(self) -> int:
        return len(self.load())

    def __repr__(self) -> str:
        return f"LazyTokenizer({self._path!r}, loaded={self.loaded})"

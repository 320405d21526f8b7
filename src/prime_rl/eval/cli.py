"""`eval @ eval.toml`: parses the config, then imports and runs the evaluation (`eval.py`), so `--help` and config
errors answer before torch is imported."""

from __future__ import annotations

from prime_rl.eval.config import EvalConfig
from prime_rl.utils.config import run_cli


def main(argv: list[str] | None = None) -> None:
    run_cli("eval", EvalConfig, "prime_rl.eval.eval:run_eval", argv)


if __name__ == "__main__":
    main()

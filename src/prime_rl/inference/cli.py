"""`inference @ infer.toml`: parses the config, then imports and runs the server (`server.py`), so `--help` and
config errors answer before torch is imported."""

from __future__ import annotations

from prime_rl.inference.config import InferenceConfig
from prime_rl.utils.config import run_cli


def main(argv: list[str] | None = None) -> None:
    run_cli("inference", InferenceConfig, "prime_rl.inference.server:serve", argv)


if __name__ == "__main__":
    main()

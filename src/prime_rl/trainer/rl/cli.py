"""`trainer @ train.toml`: parses the config, then imports and runs the training loop (`train.py`), so `--help` and
config errors answer before torch is imported."""

from __future__ import annotations

from prime_rl.trainer.rl.config import RLTrainerConfig
from prime_rl.utils.config import run_cli


def main(argv: list[str] | None = None) -> None:
    run_cli("trainer", RLTrainerConfig, "prime_rl.trainer.rl.train:train", argv)


if __name__ == "__main__":
    main()

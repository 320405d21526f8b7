"""`sft @ sft.toml`: parses the config, then imports and runs the SFT loop (`train.py`), so `--help` and config
errors answer before torch is imported."""

from __future__ import annotations

from prime_rl.trainer.sft.config import SFTConfig
from prime_rl.utils.config import run_cli


def main(argv: list[str] | None = None) -> None:
    run_cli("sft", SFTConfig, "prime_rl.trainer.sft.train:train", argv)


if __name__ == "__main__":
    main()

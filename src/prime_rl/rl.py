"""`rl @ rl.toml`: parses the combined config, then imports and runs the launcher (`launcher/launch.py`), so `--help`
and config errors answer before torch is imported."""

from __future__ import annotations

from prime_rl.launcher.config import RLConfig
from prime_rl.utils.config import run_cli


def main(argv: list[str] | None = None) -> None:
    run_cli("rl", RLConfig, "prime_rl.launcher.launch:launch", argv)


if __name__ == "__main__":
    main()

"""`python -m prime_rl.reference @ rl.toml`: parses the `rl` config, then imports and runs the reference loop."""

from __future__ import annotations

from prime_rl.launcher.config import RLConfig
from prime_rl.utils.config import run_cli


def main(argv: list[str] | None = None) -> None:
    run_cli("reference", RLConfig, "prime_rl.reference.loop:main", argv)


if __name__ == "__main__":
    main()

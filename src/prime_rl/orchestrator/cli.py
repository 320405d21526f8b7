"""`orchestrator @ orch.toml`: parses the config, then imports and runs the orchestrator loop (`orchestrator.py`), so
`--help` and config errors answer before torch is imported."""

from __future__ import annotations

from prime_rl.orchestrator.config import OrchestratorConfig
from prime_rl.utils.config import run_cli


def main(argv: list[str] | None = None) -> None:
    run_cli("orchestrator", OrchestratorConfig, "prime_rl.orchestrator.orchestrator:orchestrate", argv)


if __name__ == "__main__":
    main()

"""The inference server (`inference @ infer.toml`, started by `cli.py`): loads the engine and serves the app."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import uvicorn

from prime_rl.inference.app import create_app
from prime_rl.inference.config import InferenceConfig
from prime_rl.inference.engines.base import Engine
from prime_rl.inference.engines.hf import setup_hf_engine
from prime_rl.utils.config import RunError
from prime_rl.utils.logger import setup_process_logger
from prime_rl.utils.models import resolve_model_path

ENGINE_POLL_SECONDS = 1.0
"""How often the server asks the engine whether it can still serve (`Engine.failure`)."""


def setup_engine(config: InferenceConfig):
    """Builds and starts the engine described by `config` (`engine`: transformers or vLLM)."""
    if config.engine == "vllm":
        from prime_rl.inference.engines.vllm import setup_vllm_engine

        return setup_vllm_engine(config)
    engine = setup_hf_engine(
        resolve_model_path(config.model.name),
        dtype=config.model.dtype,
        device=config.model.device,
        max_model_len=config.model.max_model_len,
        max_batch_size=config.max_batch_size,
        num_threads=config.num_threads,
        seed=config.seed,
        pin_threads=config.pin_threads,
    )
    engine.start()
    return engine


def setup_app(config: InferenceConfig, engine):
    """The FastAPI app serving `engine` under the configured model name (its resolved path is an alias)."""
    aliases = {engine.model_path, Path(engine.model_path).name}
    server = config.server
    return create_app(
        engine, engine.tokenizer, config.model.name, aliases, config.output_dir, server.api_key, server.max_body_bytes
    )


def serve(config: InferenceConfig) -> None:
    logger = setup_process_logger("inference", config.log, config.output_dir)
    engine = setup_engine(config)
    app = setup_app(config, engine)
    logger.info(f"serving `{config.model.name}` on http://{config.server.host}:{config.server.port}")
    try:
        failure = run_until_failure(app, engine, config.server.host, config.server.port)
    finally:
        engine.shutdown()
    if failure is not None:
        raise RunError(f"inference server stopped: {failure}")


def run_until_failure(app, engine: Engine, host: str, port: int) -> str | None:
    """Serves `app` until stopped (None) or until `engine` reports a failure (returned): a server whose engine died
    exits, so `rl` sees it and stops, instead of answering every request with a 500 the clients retry."""
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False))
    failure: list[str] = []

    def watch() -> None:
        while not server.should_exit:
            reason = engine.failure()
            if reason is not None:
                failure.append(reason)
                server.should_exit = True
            time.sleep(ENGINE_POLL_SECONDS)

    threading.Thread(target=watch, name="engine-watch", daemon=True).start()
    server.run()
    return failure[0] if failure else None

"""The inference server (`inference @ infer.toml`, started by `cli.py`): loads the engine and serves the app."""

from __future__ import annotations

from pathlib import Path

import uvicorn

from prime_rl.inference.app import create_app
from prime_rl.inference.config import InferenceConfig
from prime_rl.inference.engines.hf import setup_hf_engine
from prime_rl.utils.logger import setup_process_logger
from prime_rl.utils.models import resolve_model_path


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
        uvicorn.run(app, host=config.server.host, port=config.server.port, log_level="warning", access_log=False)
    finally:
        engine.shutdown()

"""The FastAPI application: OpenAI-compatible chat routes, the scoring route `/v1/logprobs`, weight routes, health
and model listing.

Every error is an OpenAI-style body `{"error": {"message", "type", "param", "code"}}`; no request can stop the
server (an unexpected exception becomes a 500 for that request only).
"""

from __future__ import annotations

import asyncio
import functools
import re
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from prime_rl.chat import render_chat
from prime_rl.inference.engines.base import Engine, EngineError, SamplingParams
from prime_rl.inference.errors import error_response
from prime_rl.inference.guard import BodyTooLarge, Guard
from prime_rl.inference.json_body import decode_json
from prime_rl.inference.protocol import INT64_MAX, ScoreRequest, build_response, parse_request
from prime_rl.inference.streaming import stream_completion
from prime_rl.inference.weight_paths import resolve_weight_dir, weight_files
from prime_rl.utils.logger import get_logger

DEFAULT_MAX_BODY_BYTES = 8 * 2**20


def create_app(
    engine: Engine,
    tokenizer: Any,
    served_name: str,
    aliases: set[str],
    output_dir: Path,
    api_key: str | None = None,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
) -> FastAPI:
    """Builds the app around a started engine; `aliases` are the other accepted values of the `model` field.

    Request bodies are decoded and prompts rendered on one worker thread, so a large request never stalls the event
    loop (and `/health` with it).
    """
    app = FastAPI(title="prime-rl inference")
    app.add_middleware(Guard, api_key=api_key, max_body_bytes=max_body_bytes)
    worker = ThreadPoolExecutor(1, thread_name_prefix="inference-parse")
    logger = get_logger("inference.server")
    accepted = {served_name.lower(), *(a.lower() for a in aliases)}
    output_root = output_dir.resolve()
    created = int(time.time())

    @functools.lru_cache(maxsize=1 << 17)
    def token_text(token_id: int) -> str:
        return tokenizer.decode([token_id])

    @app.exception_handler(EngineError)
    async def _engine_error(request: Request, exc: EngineError) -> JSONResponse:
        return error_response(exc.status, exc.message, exc.param)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return error_response(exc.status_code, f"{request.method} {request.url.path}: {exc.detail}")

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        logger.exception(f"{request.method} {request.url.path} failed")
        return error_response(500, f"{request.url.path}: internal error: {type(exc).__name__}: {exc}")

    @app.exception_handler(BodyTooLarge)
    async def _too_large(request: Request, exc: BodyTooLarge) -> JSONResponse:
        return error_response(413, str(exc))

    async def off_loop(fn, *args):
        return await asyncio.get_running_loop().run_in_executor(worker, fn, *args)

    async def json_body(request: Request) -> Any:
        return await off_loop(decode_json, await request.body())

    def check_model(model: str | None) -> None:
        if model is not None and model.lower() not in accepted:
            raise EngineError(f"model `{model}` is not served here (this server serves `{served_name}`)", "model")

    async def complete(request: Request, token_route: bool) -> JSONResponse | StreamingResponse:
        req = parse_request(await json_body(request))
        check_model(req.model)
        if token_route:
            if req.tokens is None:
                raise EngineError("`tokens` (the prompt token ids) is required on this route", "tokens")
            prompt_ids = list(req.tokens)
        else:
            if req.tokens is not None:
                raise EngineError("`tokens` is only accepted by /v1/chat/completions/tokens", "tokens")
            if not req.messages:
                raise EngineError("`messages` must be a non-empty list", "messages")
            prompt_ids = await off_loop(_render, tokenizer, req.messages, req.tool_dicts())
        try:
            engine.check(prompt_ids, req.sampling_params())
        except EngineError as e:
            if token_route and e.param == "messages":
                e.param = "tokens"
            raise
        if req.stream:
            chunks = stream_completion(engine, tokenizer, prompt_ids, req, served_name, token_text)
            return StreamingResponse(chunks, media_type="text/event-stream")
        result = await _unless_disconnected(request, engine, prompt_ids, req.sampling_params())
        if result is None:
            return error_response(499, "the client disconnected; generation was cancelled")
        return JSONResponse(build_response(result, served_name, req, token_text))

    @app.post("/v1/chat/completions", response_model=None)
    async def chat_completions(request: Request) -> JSONResponse | StreamingResponse:
        return await complete(request, token_route=False)

    @app.post("/v1/chat/completions/tokens", response_model=None)
    async def chat_completions_tokens(request: Request) -> JSONResponse | StreamingResponse:
        return await complete(request, token_route=True)

    @app.post("/v1/logprobs")
    async def logprobs(request: Request) -> JSONResponse:
        req = parse_request(await json_body(request), ScoreRequest)
        check_model(req.model)
        result = await engine.score(list(req.tokens), req.start, req.temperature)
        return JSONResponse(
            {
                "object": "logprobs",
                "model": served_name,
                "start": req.start,
                "temperature": req.temperature,
                "logprobs": result.logprobs_T,
                "policy_step": result.policy_step,
                "usage": {"prompt_tokens": len(req.tokens), "completion_tokens": 0, "total_tokens": len(req.tokens)},
            }
        )

    @app.post("/update_weights")
    async def update_weights(request: Request) -> JSONResponse:
        body = await json_body(request)
        weight_dir, step = _parse_update(body, output_root)
        await off_loop(weight_files, weight_dir, output_root)
        await engine.update_weights(weight_dir, step)
        logger.info(f"policy step {step} loaded from {weight_dir}")
        return JSONResponse({"status": "ok", "policy_step": step, "weight_dir": str(weight_dir)})

    @app.post("/reload_weights")
    async def reload_weights() -> JSONResponse:
        await engine.reload_weights()
        return JSONResponse({"status": "ok", "policy_step": engine.policy_step})

    @app.get("/health")
    async def health() -> JSONResponse:
        failure = engine.failure()
        if failure is not None:
            return error_response(503, failure)
        return JSONResponse({"status": "ok", "policy_step": engine.policy_step})

    @app.get("/v1/models")
    async def models() -> JSONResponse:
        card = {
            "id": served_name,
            "object": "model",
            "created": created,
            "owned_by": "prime-rl",
            "max_model_len": engine.max_model_len,
        }
        return JSONResponse({"object": "list", "data": [card]})

    return app


async def _unless_disconnected(request: Request, engine: Engine, prompt_ids: list[int], params: SamplingParams):
    """The engine's result, or None (generation cancelled) if the client hangs up first."""
    generation = asyncio.ensure_future(engine.generate(prompt_ids, params))
    hangup = asyncio.ensure_future(_disconnect(request))
    try:
        await asyncio.wait({generation, hangup}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        hangup.cancel()
        if not generation.done():
            generation.cancel()  # the engine drops a request whose future was cancelled
    return generation.result() if generation.done() and not generation.cancelled() else None


async def _disconnect(request: Request) -> None:
    """Returns when the client closes the connection (the body was already read, so only that message is left)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


def _render(tokenizer: Any, messages: list[dict[str, Any]], tools: list[dict] | None = None) -> list[int]:
    """Renders `messages` (and `tools`) with the model's chat template (`add_generation_prompt=True`) into token ids."""
    try:
        return render_chat(tokenizer, messages, tools)
    except Exception as e:
        raise EngineError(f"the chat template cannot render `messages`: {e}", "messages") from None


def _parse_update(body: Any, output_root: Path) -> tuple[Path, int]:
    """Checks the `/update_weights` body: `weight_dir` inside the output root (else 403) and a policy step."""
    if not isinstance(body, dict):
        raise EngineError("the request body must be a JSON object")
    unknown = sorted(set(body) - {"weight_dir", "step"})
    if unknown:
        raise EngineError(f"unknown field `{unknown[0]}`", unknown[0])
    raw = body.get("weight_dir")
    if not isinstance(raw, str) or not raw:
        raise EngineError("`weight_dir` (a directory path) is required", "weight_dir")
    weight_dir = resolve_weight_dir(raw, output_root)
    step = body.get("step")
    if step is None:
        match = re.fullmatch(r"step_(\d+)", weight_dir.name)
        if match is None:
            raise EngineError(
                f"`step` is required: it cannot be read from the directory name `{weight_dir.name}`", "step"
            )
        step = int(match.group(1))
    if not isinstance(step, int) or isinstance(step, bool) or not 0 <= step <= INT64_MAX:
        raise EngineError(f"`step` must be a non-negative integer below 2**63 (got {step!r})", "step")
    return weight_dir, step

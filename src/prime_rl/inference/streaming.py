"""`stream: true`: server-sent `chat.completion.chunk` events, one per sampled token, as the engine produces them.

Text deltas hold back the last `len(longest stop string) - 1` characters (a stop string may still complete) and an
incomplete UTF-8 character; the final chunk of each choice carries the rest of its text and its finish reason. A
last chunk with empty `choices` carries `usage` and `policy_step`, then `data: [DONE]`. When tool calls are parsed,
deltas stop at a `<tool_call>` tag (or what may become one); the final chunk carries the `tool_calls` (each with its
`index`) and the rest of the content.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

from prime_rl.chat.tool_calls import OPEN
from prime_rl.inference.engines.base import Engine, EngineError
from prime_rl.inference.protocol import ChatCompletionRequest, assistant_message


def _event(body: dict) -> str:
    return f"data: {json.dumps(body)}\n\n"


def _entry(token_text: Callable[[int], str], token_id: int, logprob: float) -> dict:
    text = token_text(token_id)
    return {"token": text, "logprob": logprob, "bytes": list(text.encode("utf-8"))}


def _before_tool_call(text: str) -> str:
    """`text` up to its first `<tool_call>` tag, without a tail that may still grow into one."""
    at = text.find(OPEN)
    if at >= 0:
        return text[:at]
    for k in range(len(OPEN) - 1, 0, -1):
        if text.endswith(OPEN[:k]):
            return text[:-k]
    return text


async def stream_completion(
    engine: Engine,
    tokenizer: Any,
    prompt_ids: list[int],
    req: ChatCompletionRequest,
    served_name: str,
    token_text: Callable[[int], str],
) -> AsyncIterator[str]:
    """Yields SSE lines for one streamed request (the request was already checked with `engine.check`)."""
    queue: asyncio.Queue = asyncio.Queue()
    params = req.sampling_params()
    hold = max((len(s) for s in params.stop), default=1) - 1
    ids_N_T: list[list[int]] = [[] for _ in range(params.n)]
    sent_N = [""] * params.n
    head = {"id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion.chunk", "created": int(time.time())}
    head["model"] = served_name

    def on_token(index: int, token: int, logprob: float, top: list, last: bool) -> None:
        queue.put_nowait((index, token, logprob, top, last))

    task = asyncio.ensure_future(engine.generate(prompt_ids, params, on_token))
    task.add_done_callback(lambda _: queue.put_nowait(None))
    try:
        while (item := await queue.get()) is not None:
            index, token, logprob, top, last = item
            ids_N_T[index].append(token)
            delta = ""
            if not last:  # the last token's text (maybe cut at a stop string) comes with the final chunk
                text = tokenizer.decode(ids_N_T[index], skip_special_tokens=True)
                safe = (text[: len(text) - hold] if hold else text).rstrip("\ufffd")
                if req.parses_tool_calls:
                    safe = _before_tool_call(safe)
                delta = safe[len(sent_N[index]) :] if safe.startswith(sent_N[index]) else ""
                sent_N[index] += delta
            choice: dict = {"index": index, "delta": {"role": "assistant", "content": delta}, "finish_reason": None}
            choice["logprobs"] = None
            if req.logprobs:
                entry = _entry(token_text, token, logprob)
                entry["top_logprobs"] = [_entry(token_text, i, v) for i, v in top]
                choice["logprobs"] = {"content": [entry]}
            if req.return_token_ids:
                choice["token_ids"] = [token]
            yield _event({**head, "choices": [choice]})
        result = task.result()
    except EngineError as e:
        error = {"message": e.message, "type": "invalid_request_error", "param": e.param, "code": e.status}
        yield _event({"error": error})
        yield "data: [DONE]\n\n"
        return
    finally:
        if not task.done():
            task.cancel()
    for index, choice in enumerate(result.choices):
        message, finish_reason = assistant_message(choice.text, choice.finish_reason, req.parses_tool_calls)
        content = message["content"] or ""
        delta: dict[str, Any] = {"content": content[len(sent_N[index]) :] if content.startswith(sent_N[index]) else ""}
        if "tool_calls" in message:
            delta["tool_calls"] = [{"index": i, **call} for i, call in enumerate(message["tool_calls"])]
        final = {"index": index, "delta": delta, "finish_reason": finish_reason, "logprobs": None}
        yield _event({**head, "choices": [final]})
    completion = sum(len(c.token_ids_T) for c in result.choices)
    usage = {"prompt_tokens": len(prompt_ids), "completion_tokens": completion}
    usage["total_tokens"] = len(prompt_ids) + completion
    tail: dict = {**head, "choices": [], "usage": usage, "policy_step": result.policy_step}
    if req.return_token_ids:
        tail["prompt_token_ids"] = prompt_ids
    yield _event(tail)
    yield "data: [DONE]\n\n"

"""ASGI middleware in front of every route: the API key and the request-body size limit.

A plain ASGI layer rather than `@app.middleware("http")`, so route handlers receive the server's own `receive` and
can notice a client that disconnected while its request waits for the engine.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from prime_rl.inference.errors import error_body


class Guard:
    """401 without the API key (except `/health`); 413 for a body over `max_body_bytes` (the rest is discarded)."""

    def __init__(self, app: ASGIApp, api_key: str | None, max_body_bytes: int):
        self.app = app
        self.api_key = api_key
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        authorized = headers.get(b"authorization", b"") == f"Bearer {self.api_key}".encode()
        if self.api_key and scope["path"] != "/health" and not authorized:
            await _send_error(send, 401, "missing or wrong API key (send `Authorization: Bearer <key>`)")
            return
        declared = headers.get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.max_body_bytes:
            await _send_error(send, 413, self._too_large(int(declared)))
            return
        await self.app(scope, self._limited(receive, send), send)

    def _too_large(self, size: int | None) -> str:
        got = f" ({size} bytes)" if size is not None else ""
        return f"the request body{got} exceeds the server's limit of {self.max_body_bytes} bytes (max_body_bytes)"

    def _limited(self, receive: Receive, send: Send) -> Receive:
        """A `receive` that fails a chunked body once it passes the limit."""
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_body_bytes:
                    raise BodyTooLarge(self._too_large(None))
            return message

        return limited


class BodyTooLarge(Exception):
    """A body without `Content-Length` grew past the limit while it was read (answered 413 by the app)."""


async def _send_error(send: Send, status: int, message: str) -> None:
    body = json.dumps(error_body(status, message)).encode()
    headers: list[Any] = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})

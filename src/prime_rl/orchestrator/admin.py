"""Control routes of the inference server(s): `/health`, `/update_weights`, `/reload_weights` (DESIGN.md section 6)."""

from __future__ import annotations

import asyncio
import itertools
import time
from pathlib import Path

import httpx

from prime_rl.orchestrator.client import backoff


class InferenceAdminError(Exception):
    """A control request to an inference server failed."""


def root_url(base_url: str) -> str:
    """`http://host:port/v1` → `http://host:port` (the control routes live at the root)."""
    url = base_url.rstrip("/")
    return url[: -len("/v1")] if url.endswith("/v1") else url


class InferenceAdmin:
    """Sends the same control request to every server; any failure names the server and its answer."""

    def __init__(
        self, base_urls: list[str], api_key: str | None = None, timeout: float = 600.0, retry_timeout: float = 0.0
    ):
        self.urls = [root_url(u) for u in base_urls]
        self.retry_timeout = retry_timeout
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = httpx.AsyncClient(headers=headers, timeout=timeout)

    async def wait_healthy(self, timeout: float, poll_interval: float = 0.5) -> None:
        deadline = time.monotonic() + timeout
        for url in self.urls:
            while True:
                try:
                    if (await self._http.get(f"{url}/health")).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    raise InferenceAdminError(f"inference server {url} not healthy after {timeout:.0f}s ({url}/health)")
                await asyncio.sleep(poll_interval)

    async def _post_all(self, route: str, body: dict | None = None) -> None:
        async def post(url: str) -> None:
            start = time.monotonic()
            for attempt in itertools.count():
                try:
                    response = await self._http.post(f"{url}{route}", json=body)
                    break
                except httpx.TransportError as e:
                    wait = backoff(attempt)
                    if time.monotonic() - start + wait > self.retry_timeout:
                        raise InferenceAdminError(
                            f"POST {url}{route} failed for {time.monotonic() - start:.0f}s "
                            f"(client.retry_timeout = {self.retry_timeout:g}): {type(e).__name__}: {e}"
                        ) from None
                    await asyncio.sleep(wait)
            if response.status_code >= 400:
                raise InferenceAdminError(
                    f"POST {url}{route} {body}: HTTP {response.status_code}: {response.text[:500]}"
                )

        await asyncio.gather(*(post(url) for url in self.urls))

    async def update_weights(self, weight_dir: Path, step: int) -> None:
        await self._post_all("/update_weights", {"weight_dir": str(Path(weight_dir).resolve()), "step": step})

    async def reload_weights(self) -> None:
        await self._post_all("/reload_weights")

    async def close(self) -> None:
        await self._http.aclose()

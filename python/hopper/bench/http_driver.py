"""The HTTP transport: httpx async, one client with one keep-alive connection per lane.

One client per lane rather than one pool of `lanes` connections: with 16 lanes sharing one
httpx pool the pool bookkeeping, not the server, set the pace (about half the rate here).
"""

from __future__ import annotations

import importlib.util
import sys
from typing import Any

import httpx
import orjson

from hopper.bench.transport import Pulled, RequestFailed, check_ok, pulled

JSON = {"content-type": "application/json"}


def _cache_missing_sniffio() -> None:
    """httpcore 1.0 imports the optional `sniffio` on every lock it sets up; without sniffio
    installed (anyio >= 4.11 no longer pulls it in) each failed import searches sys.path,
    several times per request (encode/httpcore#1103). A None entry in sys.modules makes
    that import fail at once, as it would anyway. Only done when sniffio is absent."""
    if "sniffio" not in sys.modules and importlib.util.find_spec("sniffio") is None:
        sys.modules["sniffio"] = None  # type: ignore[assignment]


class HttpTransport:
    name = "http"

    def __init__(self, url: str, token: str | None = None, timeout_s: float = 10.0) -> None:
        self.url = url.rstrip("/")
        self.token = token
        self.timeout_s = timeout_s
        self._clients: list[httpx.AsyncClient] = []

    async def open(self, lanes: int) -> None:
        _cache_missing_sniffio()
        headers = {"authorization": f"Bearer {self.token}"} if self.token else {}
        one = httpx.Limits(max_connections=1, max_keepalive_connections=1)
        self._clients = [
            httpx.AsyncClient(
                base_url=self.url, headers=headers, timeout=self.timeout_s, limits=one
            )
            for _ in range(max(1, lanes))
        ]

    async def close(self) -> None:
        clients, self._clients = self._clients, []
        for c in clients:
            await c.aclose()

    async def _call(
        self,
        lane: int,
        method: str,
        path: str,
        body: bytes | None = None,
        timeout: float | None = None,
    ) -> dict[str, Any]:
        try:
            resp = await self._clients[lane % len(self._clients)].request(
                method,
                path,
                content=body,
                headers=JSON if body is not None else None,
                timeout=timeout if timeout is not None else self.timeout_s,
            )
        except httpx.HTTPError as e:
            raise RequestFailed(f"{type(e).__name__}: {e}") from e
        try:
            parsed = orjson.loads(resp.content)
        except orjson.JSONDecodeError:
            raise RequestFailed(f"HTTP {resp.status_code}: {resp.text[:200]}") from None
        if resp.status_code >= 300:
            raise RequestFailed(f"HTTP {resp.status_code}: {str(parsed)[:200]}")
        return check_ok(parsed)

    async def push(self, lane: int, queue: str, data: Any) -> str:
        body = await self._call(lane, "POST", f"/queues/{queue}/jobs", orjson.dumps({"data": data}))
        return str(body.get("id"))

    async def pull(self, lane: int, queue: str, timeout_ms: int) -> Pulled | None:
        body = await self._call(
            lane,
            "GET",
            f"/queues/{queue}/jobs?timeout={timeout_ms}",
            timeout=self.timeout_s + timeout_ms / 1000,
        )
        return pulled(body)

    async def ack(self, lane: int, job: Pulled) -> None:
        payload = {"token": job.token} if job.token else {}
        await self._call(lane, "POST", f"/jobs/{job.id}/ack", orjson.dumps(payload))

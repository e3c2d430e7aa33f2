"""Raw ASGI plumbing for the job server: one request type, one response type, the
`{ok:false,error}` error envelope, CORS headers, and body reading with a size limit.
No framework on the hot path: a handler gets bytes in and hands bytes out."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

import orjson

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

JSON = b"application/json"
# A body over the limit is still read (and dropped) up to this size so the 413 reaches
# the client; a larger one is refused without reading it.
MAX_DRAIN_BYTES = 64 * 1024 * 1024


class HttpError(Exception):
    """Ends a request with `{ok:false, error}` and the given status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class BodyTooLarge(HttpError):
    def __init__(self, limit: int) -> None:
        super().__init__(413, f"Request body too large (max {limit} bytes)")


@dataclass(slots=True)
class Request:
    scope: Scope
    receive: Receive
    method: str
    path: str
    params: dict[str, str]
    max_body: int
    _query: dict[str, str] | None = field(default=None)

    def header(self, name: bytes) -> bytes | None:
        for key, value in self.scope["headers"]:
            if key == name:
                return bytes(value)
        return None

    @property
    def query(self) -> dict[str, str]:
        if self._query is None:
            raw = self.scope.get("query_string", b"").decode("latin-1")
            self._query = dict(parse_qsl(raw, keep_blank_values=True))
        return self._query

    async def body(self) -> bytes:
        """The whole body, refusing more than `max_body` bytes (by header, then by count)."""
        message = await self.receive()
        if not message.get("more_body", False) and message["type"] == "http.request":
            body: bytes = message.get("body", b"")
            if len(body) <= self.max_body:
                return body  # the common case: one small chunk
        return await self._body_slow(message)

    async def _body_slow(self, message: Message) -> bytes:
        length = self.header(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_body:
            if message.get("more_body", False) and int(length) <= MAX_DRAIN_BYTES:
                await self._drain()
            raise BodyTooLarge(self.max_body)
        chunks: list[bytes] = []
        size = 0
        while True:
            if message["type"] == "http.disconnect":
                raise HttpError(400, "Client disconnected")
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                if message.get("more_body", False):
                    await self._drain()
                raise BodyTooLarge(self.max_body)
            chunks.append(chunk)
            if not message.get("more_body", False):
                return chunks[0] if len(chunks) == 1 else b"".join(chunks)
            message = await self.receive()

    async def _drain(self) -> None:
        """Reads and drops the rest of a refused body (at most MAX_DRAIN_BYTES). A client
        still sending it would otherwise get a connection reset instead of the 413."""
        budget = MAX_DRAIN_BYTES
        while budget > 0:
            message = await self.receive()
            if message["type"] == "http.disconnect":
                return
            budget -= len(message.get("body", b""))
            if not message.get("more_body", False):
                return


@dataclass(slots=True)
class Response:
    status: int
    body: bytes
    content_type: bytes = JSON
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)


def ok(body: bytes) -> Response:
    return Response(200, body)


def error_body(message: str) -> bytes:
    return orjson.dumps({"ok": False, "error": message})


def error(status: int, message: str) -> Response:
    return Response(status, error_body(message))


OK_TRUE = Response(200, b'{"ok":true}')


async def send_response(send: Send, response: Response, cors: list[tuple[bytes, bytes]]) -> None:
    headers = [
        (b"content-type", response.content_type),
        (b"content-length", b"%d" % len(response.body)),
        *cors,
    ]
    if response.headers:
        headers += response.headers
    await send({"type": "http.response.start", "status": response.status, "headers": headers})
    await send({"type": "http.response.body", "body": response.body})

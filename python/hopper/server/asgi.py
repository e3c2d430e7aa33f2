"""The ASGI interface: turns ASGI scopes and messages into the server's own request,
responder, stream and socket types (`http.py`) and hands them to the pipeline. Nothing
here knows a route."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from hopper.server.http import (
    MAX_DRAIN_BYTES,
    BodyTooLarge,
    Headers,
    HttpError,
    Request,
    Response,
    Socket,
    Stream,
    Upgrade,
)
from hopper.server.pipeline import Interface

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


def _origin(scope: Scope) -> bytes | None:
    for k, v in scope["headers"]:
        if k == b"origin":
            return bytes(v)
    return None


def _encode(headers: Headers) -> list[tuple[bytes, bytes]]:
    return [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers]


class AsgiRequest(Request):
    __slots__ = ("_cors", "_send", "receive", "scope")

    def __init__(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        max_body: int,
        cors: list[tuple[bytes, bytes]],
    ) -> None:
        super().__init__(
            scope.get("method", "WS"),
            scope["path"],
            scope.get("query_string", b"").decode("latin-1"),
            max_body,
        )
        self.scope = scope
        self.receive = receive
        self._send = send
        self._cors = cors

    def header(self, name: str) -> str | None:
        key = name.encode("latin-1")
        for k, v in self.scope["headers"]:
            if k == key:
                return bytes(v).decode("latin-1")
        return None

    async def body(self) -> bytes:
        message = await self.receive()
        if not message.get("more_body", False) and message["type"] == "http.request":
            body: bytes = message.get("body", b"")
            if len(body) <= self.max_body:
                return body  # the common case: one small chunk
        return await self._body_slow(message)

    async def _body_slow(self, message: Message) -> bytes:
        if self.declared_too_large():
            if message.get("more_body", False) and self._declared() <= MAX_DRAIN_BYTES:
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

    def _declared(self) -> int:
        return int(self.header("content-length") or 0)

    async def _drain(self) -> None:
        """Reads and drops the rest of a refused body (at most MAX_DRAIN_BYTES): a client
        still sending it would otherwise get a connection reset instead of the 413."""
        budget = MAX_DRAIN_BYTES
        while budget > 0:
            message = await self.receive()
            if message["type"] == "http.disconnect":
                return
            budget -= len(message.get("body", b""))
            if not message.get("more_body", False):
                return

    async def disconnected(self) -> None:
        while (await self.receive())["type"] not in ("http.disconnect", "websocket.disconnect"):
            pass

    async def respond(self, response: Response, cors: bool = True) -> None:
        headers = (
            [
                (b"content-type", response.content_type.encode("latin-1")),
                (b"content-length", b"%d" % len(response.body)),
            ]
            if response.content_type
            else []
        )
        if cors:
            headers += self._cors
        if response.headers:
            headers += _encode(response.headers)
        start = {"type": "http.response.start", "status": response.status, "headers": headers}
        await self._send(start)
        await self._send({"type": "http.response.body", "body": response.body})

    def stream(self) -> Stream:
        return AsgiStream(self._send)


class AsgiStream(Stream):
    def __init__(self, send: Send) -> None:
        self._send = send

    async def open(self, status: int, headers: Headers) -> None:
        self.opened = True
        await self._send(
            {"type": "http.response.start", "status": status, "headers": _encode(headers)}
        )

    async def write(self, chunk: bytes) -> None:
        await self._send({"type": "http.response.body", "body": chunk, "more_body": True})

    async def end(self) -> None:
        await self._send({"type": "http.response.body", "body": b""})


class AsgiSocket(Socket):
    __slots__ = ("_receive", "_send")

    def __init__(self, receive: Receive, send: Send) -> None:
        self._receive = receive
        self._send = send

    async def receive(self) -> bytes | None:
        message = await self._receive()
        if message["type"] != "websocket.receive":
            return None
        text = message.get("text")
        return text.encode() if text is not None else message.get("bytes") or b""

    async def send(self, text: bytes) -> None:
        await self._send({"type": "websocket.send", "text": text.decode()})

    async def close(self, code: int, reason: str) -> None:
        await self._send({"type": "websocket.close", "code": code, "reason": reason})


class AsgiUpgrade(Upgrade):
    def __init__(self, scope: Scope, receive: Receive, send: Send, cors: Headers) -> None:
        self._scope, self._receive, self._send, self._cors = scope, receive, send, cors

    async def accept(self) -> Socket:
        await self._receive()  # websocket.connect
        await self._send({"type": "websocket.accept"})
        return AsgiSocket(self._receive, self._send)

    async def reject(self, response: Response) -> None:
        """With the ASGI denial-response extension: the status and `{ok:false}` body;
        without it, a close of the handshake (policy violation)."""
        await self._receive()  # websocket.connect
        if "websocket.http.response" not in self._scope.get("extensions", {}):
            await self._send({"type": "websocket.close", "code": 1008})
            return
        headers = [
            ("content-type", response.content_type),
            ("content-length", str(len(response.body))),
            *self._cors,
        ]
        await self._send(
            {
                "type": "websocket.http.response.start",
                "status": response.status,
                "headers": _encode(headers),
            }
        )
        await self._send({"type": "websocket.http.response.body", "body": response.body})


class AsgiInterface(Interface):
    """The ASGI entry point over the pipeline (lifespan included)."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        max_body = self.pipeline.max_body
        cors = self.pipeline.cors
        origin = None if cors.fixed or kind == "lifespan" else _origin(scope)
        if kind == "http":
            request = AsgiRequest(scope, receive, send, max_body, cors.encoded(origin))
            await self.pipeline.http(request)
        elif kind == "websocket":
            request = AsgiRequest(scope, receive, send, max_body, cors.encoded(origin))
            text_origin = None if origin is None else origin.decode("latin-1")
            upgrade = AsgiUpgrade(scope, receive, send, cors.headers(text_origin))
            await self.pipeline.websocket(request, upgrade)
        elif kind == "lifespan":
            await self._lifespan(receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self._on_start(asyncio.get_running_loop())
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                self._on_stop()
                await send({"type": "lifespan.shutdown.complete"})
                return

"""Granian's RSGI interface: the same pipeline as `asgi.py` behind RSGI's calls, which
cost less per request than ASGI's message dicts (measured in docs/performance.md). RSGI
gives no close code or reason on an accepted WebSocket and no body on a refused
handshake; docs/compatibility.md says what that changes."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from hopper.server.http import (
    MAX_DRAIN_BYTES,
    NO_PARAMS,
    BodyTooLarge,
    Headers,
    Request,
    Response,
    Socket,
    Stream,
    Upgrade,
)
from hopper.server.pipeline import Interface

BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# granian.rsgi.WebsocketMessageType, without importing granian where it is not serving.
_WS_CLOSE = 0


class RsgiRequest(Request):
    __slots__ = ("body_read", "cors", "protocol", "scope")

    def __init__(
        self, scope: Any, protocol: Any, max_body: int, method: str, cors: Headers
    ) -> None:
        # The base class's fields, set here without a super() call: this runs per request.
        self.method = method
        self.path = scope.path
        self.params = NO_PARAMS
        self.max_body = max_body
        self._query_string = scope.query_string
        self._query = None
        self.scope = scope
        self.protocol = protocol
        self.cors = cors
        self.body_read = False

    def header(self, name: str) -> str | None:
        value: str | None = self.scope.headers.get(name)
        return value

    async def body(self) -> bytes:
        self.body_read = True
        length = self.header("content-length")
        if length is not None and length.isdigit():
            declared = int(length)
            if declared <= self.max_body:
                body: bytes = await self.protocol()
                return body
            if declared <= MAX_DRAIN_BYTES:
                async for _chunk in self.protocol:
                    pass  # dropped: the 413 then reaches a client still sending
            raise BodyTooLarge(self.max_body)
        if self.method in ("GET", "HEAD", "DELETE", "OPTIONS"):
            return b""
        return await self._read_counted()

    async def _read_counted(self) -> bytes:
        """A body without Content-Length (chunked): counted as it comes; past the limit
        the rest is read and dropped (bounded), so the 413 reaches a client still
        sending instead of a connection reset."""
        chunks: list[bytes] = []
        size = 0
        async for chunk in self.protocol:
            size += len(chunk)
            if size > MAX_DRAIN_BYTES:
                break
            if size <= self.max_body:
                chunks.append(chunk)
        if size > self.max_body:
            raise BodyTooLarge(self.max_body)
        return b"".join(chunks)

    async def disconnected(self) -> None:
        await self.protocol.client_disconnect()

    async def _discard_body(self) -> None:
        """Reads a body nobody asked for (a request refused before its handler read it),
        bounded: answered with its body unread, the connection could not be kept alive,
        and a client reusing it would find it closed."""
        self.body_read = True
        length = self.header("content-length")
        if length is not None and (not length.isdigit() or int(length) > MAX_DRAIN_BYTES):
            return
        with contextlib.suppress(RuntimeError):
            await self._read_counted()

    async def respond(self, response: Response, cors: bool = True) -> None:
        if not self.body_read and self.method in BODY_METHODS:
            await self._discard_body()
        headers = [("content-type", response.content_type)] if response.content_type else []
        if cors:
            headers += self.cors
        if response.headers:
            headers += response.headers
        self.protocol.response_bytes(response.status, headers, response.body)

    def stream(self) -> Stream:
        return RsgiStream(self.protocol)


class RsgiStream(Stream):
    def __init__(self, protocol: Any) -> None:
        self._protocol = protocol
        self._transport: Any = None

    async def open(self, status: int, headers: Headers) -> None:
        self.opened = True
        self._transport = self._protocol.response_stream(status, headers)

    async def write(self, chunk: bytes) -> None:
        try:
            await self._transport.send_bytes(chunk)
        except RuntimeError as e:  # RSGIProtocolClosed: the client went away
            raise ConnectionResetError(str(e)) from None

    async def end(self) -> None:
        """The response ends when the handler returns."""


class RsgiSocket(Socket):
    __slots__ = ("_protocol", "_transport")

    def __init__(self, protocol: Any, transport: Any) -> None:
        self._protocol = protocol
        self._transport = transport

    async def receive(self) -> bytes | None:
        try:
            message = await self._transport.receive()
        except RuntimeError:  # RSGIProtocolClosed / RSGIProtocolError
            return None
        if message.kind == _WS_CLOSE:
            return None
        data: bytes | str = message.data
        return data.encode() if isinstance(data, str) else data

    async def send(self, text: bytes) -> None:
        try:
            await self._transport.send_str(text.decode())
        except RuntimeError as e:
            raise ConnectionResetError(str(e)) from None

    async def send_all(self, texts: list[bytes]) -> None:
        """Starts every send before awaiting any: each is a task on Granian's runtime,
        queued on the socket's writer lock in the order started, so the messages keep
        their order and the batch costs one wait instead of one round trip each."""
        send_str = self._transport.send_str
        started = [send_str(text.decode()) for text in texts]
        failure: RuntimeError | None = None
        for sent in started:
            try:
                await sent
            except RuntimeError as e:
                failure = e
        if failure is not None:
            raise ConnectionResetError(str(failure))

    async def close(self, code: int, reason: str) -> None:
        self._protocol.close(code)


class RsgiUpgrade(Upgrade):
    def __init__(self, protocol: Any) -> None:
        self._protocol = protocol

    async def accept(self) -> Socket:
        return RsgiSocket(self._protocol, await self._protocol.accept())

    async def reject(self, response: Response) -> None:
        self._protocol.close(response.status)


class RsgiInterface(Interface):
    """The RSGI entry points (`__rsgi__`, `__rsgi_init__`, `__rsgi_del__`) over the
    pipeline."""

    async def __rsgi__(self, scope: Any, protocol: Any) -> None:
        pipeline = self.pipeline
        cors = pipeline.cors
        headers = cors.headers(None if cors.fixed else scope.headers.get("origin"))
        if scope.proto == "http":
            await pipeline.http(
                RsgiRequest(scope, protocol, pipeline.max_body, scope.method, headers)
            )
        elif scope.proto == "ws":
            request = RsgiRequest(scope, protocol, pipeline.max_body, "WS", headers)
            await pipeline.websocket(request, RsgiUpgrade(protocol))

    def __rsgi_init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._on_start(loop)

    def __rsgi_del__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._on_stop()

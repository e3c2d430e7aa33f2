"""Server-sent events (`GET /events`, `GET /events/queues/:queue`) as dicts: a line parser
and the sync and async streams built on it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from types import TracebackType
from typing import Any, Generic, TypeVar

import httpx
import orjson

from hopper.client.errors import ConnectionLostError, RequestTimeoutError, ServerError
from hopper.client.errors import error_for as _error_for


class SseParser:
    """Feeds on the stream's lines; returns each complete event's JSON object. Comment
    lines (keep-alives) and the connection greeting (`{connected, clientId}`) yield
    nothing; an `event:` name (servers that send named events) fills `eventType` when
    the data lacks one; an `{ok:false, error}` message (the server dropping a client
    too slow to keep up) raises ConnectionLostError with its text."""

    def __init__(self) -> None:
        self._data: list[str] = []
        self._event: str | None = None

    def feed(self, line: str) -> dict[str, Any] | None:
        if not line:
            return self._dispatch()
        if line.startswith(":"):
            return None
        field, _, value = line.partition(":")
        if value.startswith(" "):
            value = value[1:]
        if field == "data":
            self._data.append(value)
        elif field == "event":
            self._event = value
        return None

    def _dispatch(self) -> dict[str, Any] | None:
        if not self._data:
            self._event = None
            return None
        text = "\n".join(self._data)
        event, self._event = self._event, None
        self._data = []
        try:
            msg = orjson.loads(text)
        except orjson.JSONDecodeError:
            raise ServerError(f"event is not JSON: {text[:200]!r}") from None
        if not isinstance(msg, dict):
            msg = {"data": msg}
        if msg.get("connected") is True and "clientId" in msg:
            return None
        if msg.get("ok") is False:
            raise ConnectionLostError(str(msg.get("error") or "event stream ended by server"))
        if event and "eventType" not in msg:
            msg["eventType"] = event
        return msg


def _check(resp: httpx.Response, body: bytes) -> None:
    if resp.status_code != 200:
        try:
            error = orjson.loads(body).get("error")
        except (orjson.JSONDecodeError, AttributeError):
            error = None
        raise _error_for(resp.status_code, str(error or f"HTTP {resp.status_code}"))


def _transport_error(e: httpx.HTTPError) -> Exception:
    if isinstance(e, httpx.TimeoutException):
        return RequestTimeoutError(f"event stream: no data within the read timeout ({e})")
    return ConnectionLostError(f"event stream: {type(e).__name__}: {e}")


HttpT = TypeVar("HttpT", httpx.Client, httpx.AsyncClient)


class _Stream(Generic[HttpT]):
    """What both streams hold: the request, once built, and the open response. Each
    subclass only does the I/O (blocking or awaited) around `SseParser`."""

    def __init__(
        self, http: HttpT, path: str, headers: dict[str, str], timeout: httpx.Timeout
    ) -> None:
        self._http: HttpT = http
        self._request = http.build_request("GET", path, headers=headers, timeout=timeout)
        self._resp: httpx.Response | None = None
        self._closed = False

    def _wants_connection(self) -> bool:
        return self._resp is None and not self._closed


class EventStream(_Stream[httpx.Client]):
    """A blocking SSE stream: iterate for events; `close()` (or leaving the `with`
    block) ends it. The server sends a keep-alive every 15 s, so a `read_timeout`
    above that only fires on a dead connection."""

    def open(self) -> EventStream:
        """Connects now (iteration connects on first use otherwise)."""
        if self._wants_connection():
            try:
                resp = self._http.send(self._request, stream=True)
            except httpx.HTTPError as e:
                raise _transport_error(e) from None
            if resp.status_code != 200:
                body = resp.read()
                resp.close()
                _check(resp, body)
            self._resp = resp
        return self

    def __iter__(self) -> Iterator[dict[str, Any]]:
        self.open()
        if self._resp is None:
            return
        parser = SseParser()
        try:
            for line in self._resp.iter_lines():
                event = parser.feed(line)
                if event is not None:
                    yield event
        except httpx.HTTPError as e:
            if not self._closed:
                raise _transport_error(e) from None
        finally:
            self.close()

    def close(self) -> None:
        self._closed = True
        if self._resp is not None:
            self._resp.close()

    def __enter__(self) -> EventStream:
        return self.open()

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class AsyncEventStream(_Stream[httpx.AsyncClient]):
    """The asyncio SSE stream: `async with client.events() as events: async for ev in
    events: ...`."""

    async def open(self) -> AsyncEventStream:
        if self._wants_connection():
            try:
                resp = await self._http.send(self._request, stream=True)
            except httpx.HTTPError as e:
                raise _transport_error(e) from None
            if resp.status_code != 200:
                body = await resp.aread()
                await resp.aclose()
                _check(resp, body)
            self._resp = resp
        return self

    async def __aiter__(self) -> AsyncIterator[dict[str, Any]]:
        await self.open()
        if self._resp is None:
            return
        parser = SseParser()
        try:
            async for line in self._resp.aiter_lines():
                event = parser.feed(line)
                if event is not None:
                    yield event
        except httpx.HTTPError as e:
            if not self._closed:
                raise _transport_error(e) from None
        finally:
            await self.aclose()

    async def aclose(self) -> None:
        self._closed = True
        if self._resp is not None:
            await self._resp.aclose()

    async def __aenter__(self) -> AsyncEventStream:
        return await self.open()

    async def __aexit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

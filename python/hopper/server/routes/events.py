"""SSE: `GET /events` and `GET /events/queues/:queue`. A connection message with a
clientId (and a `retry:` hint), then one unnamed `data:` message per engine event; a comment line as
keep-alive; a bounded buffer per client (a client too slow to keep up is told why and
disconnected)."""

from __future__ import annotations

import os
import time
import uuid

import orjson

from hopper.server import sse
from hopper.server.http import Headers, Request, Stream
from hopper.server.router import Doc, Kind, Router
from hopper.server.state import ServerState

OVERFLOW = b'data: {"ok":false,"error":"Event buffer overflow: client too slow, disconnecting"}\n\n'
STREAM_DOC = "text/event-stream: `data: {eventType, queue, jobId, timestamp, ...}` per event"


# EventSource's reconnection delay, sent with the connection message (as bunqueue does).
RETRY = b"retry: 3000\n"


def _uuid7() -> str:
    """A connection's clientId: a UUIDv7 (time-ordered), as documented and as bunqueue
    sends (this Python has no `uuid.uuid7`)."""
    ms = time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(10), "big")
    value = (ms & (1 << 48) - 1) << 80 | 0x7 << 76 | (rand >> 62 & 0xFFF) << 64
    value |= 0b10 << 62 | rand & (1 << 62) - 1
    return str(uuid.UUID(int=value))


def _frame(event: bytes) -> bytes:
    return b"data: " + event + b"\n\n"


def register(router: Router, state: ServerState) -> None:
    async def stream(req: Request, out: Stream, cors: Headers) -> None:
        sub = state.hub.subscribe(req.params.get("queue"))
        state.connections["sse"] += 1
        hello = orjson.dumps({"connected": True, "clientId": _uuid7()})
        try:
            await sse.pump(req, out, cors, sub, RETRY + _frame(hello), OVERFLOW, _frame)
        finally:
            state.hub.unsubscribe(sub)
            state.connections["sse"] -= 1

    doc = Doc(
        "Event stream of every queue (SSE)",
        "Job server",
        content_type="text/event-stream",
        description=STREAM_DOC,
        errors=(401, 429),
    )
    router.add("GET", "/events", stream, kind=Kind.STREAM, doc=doc)
    qdoc = Doc(
        "Event stream of one queue (SSE)",
        "Job server",
        content_type="text/event-stream",
        description=STREAM_DOC,
        errors=(401, 429),
    )
    router.add("GET", "/events/queues/:queue", stream, kind=Kind.STREAM, doc=qdoc)

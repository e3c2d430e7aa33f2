"""SSE: `GET /events` and `GET /events/queues/:queue`. A connection message with a
clientId, then one unnamed `data:` message per engine event; a comment line as
keep-alive; a bounded buffer per client (a client too slow to keep up is told why and
disconnected)."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

import orjson

from hopper.server import sse
from hopper.server.http import Request, Send
from hopper.server.router import Doc, Router

if TYPE_CHECKING:
    from hopper.server.app import ServerState

OVERFLOW = b'data: {"ok":false,"error":"Event buffer overflow: client too slow, disconnecting"}\n\n'
STREAM_DOC = "text/event-stream: `data: {eventType, queue, jobId, timestamp, ...}` per event"


def _frame(event: bytes) -> bytes:
    return b"data: " + event + b"\n\n"


def register(router: Router, state: ServerState) -> None:
    async def stream(req: Request, send: Send, cors: list[tuple[bytes, bytes]]) -> None:
        sub = state.hub.subscribe(req.params.get("queue"))
        state.connections["sse"] += 1
        hello = orjson.dumps({"connected": True, "clientId": str(uuid.uuid4())})
        try:
            await sse.pump(req.receive, send, cors, sub, _frame(hello), OVERFLOW, _frame)
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
    router.add("GET", "/events", stream, streaming=True, doc=doc)
    qdoc = Doc(
        "Event stream of one queue (SSE)",
        "Job server",
        content_type="text/event-stream",
        description=STREAM_DOC,
        errors=(401, 429),
    )
    router.add("GET", "/events/queues/:queue", stream, streaming=True, doc=qdoc)

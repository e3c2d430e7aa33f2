"""Named-event SSE for the dashboard: `GET /api/events` (every visible queue) and
`GET /api/queues/:name/events`. Frames are `event: <type>` + `data: {type, queueName,
jobId, data, timestamp}` (ISO time); `connected` first; comment lines as keep-alive."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson

from hopper.server import sse
from hopper.server.http import Headers, Request, Stream
from hopper.server.management.shapes import ALL_NAMES, iso
from hopper.server.router import Doc, Kind

if TYPE_CHECKING:
    from hopper.server.management.api import Management

# Engine event → the dashboard's event name (duplicate pushes have none).
NAMES = {
    "pushed": "job:waiting",
    "retried": "job:waiting",
    "promoted": "job:waiting",
    "pulled": "job:active",
    "completed": "job:completed",
    "failed": "job:failed",
    "progress": "job:progress",
    "stalled": "job:stalled",
    "removed": "job:removed",
    "delayed": "job:delayed",
    "waiting-children": "job:waiting-children",
    "drained": "queue:drained",
    "paused": "queue:paused",
    "resumed": "queue:resumed",
}
# A push followed at once by one of these did not make a waiting job: skip its event.
NOT_WAITING = frozenset({"delayed", "waiting-children", "failed"})
HELLO = b"event: connected\ndata: {}\n\n"
OVERFLOW = b'event: error\ndata: {"code":"OVERFLOW","message":"client too slow, disconnecting"}\n\n'


def extra(kind: str, ev: dict[str, Any]) -> Any:
    if kind == "progress":
        return {"progress": ev.get("progress")}
    if kind == "failed":
        return {"reason": ev.get("error")}
    if kind == "completed":
        return {"returnvalue": ev.get("result")}
    if kind in ("paused", "resumed"):
        return {"jobName": ev.get("name") or ALL_NAMES}
    return None


def frame(kind: str, raw: bytes, next_kind: str | None) -> bytes | None:
    name = NAMES.get(kind)
    if name is None or (kind == "pushed" and next_kind in NOT_WAITING):
        return None
    ev = orjson.loads(raw)
    body = {
        "type": name,
        "queueName": ev["queue"],
        "jobId": ev.get("jobId"),
        "data": extra(kind, ev),
        "timestamp": iso(ev["timestamp"]),
    }
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(body) + b"\n\n"


def register(api: Management) -> None:
    state = api.state

    async def stream(req: Request, out: Stream, cors: Headers) -> None:
        queue = api.queue(req) if "name" in req.params else None
        accept = api.visible if api.allow and queue is None else None
        sub = state.hub.subscribe(queue, frame=frame, accept=accept)
        state.connections["sse"] += 1
        try:
            await sse.pump(req, out, cors, sub, HELLO, OVERFLOW)
        finally:
            state.hub.unsubscribe(sub)
            state.connections["sse"] -= 1

    doc = "text/event-stream of named events: connected, job:*, queue:*"
    api.add(
        "GET",
        "/events",
        stream,
        Doc(
            "Named events of every visible queue (SSE)",
            "Events",
            content_type="text/event-stream",
            description=doc,
            errors=(401, 429),
        ),
        kind=Kind.STREAM,
    )
    api.add(
        "GET",
        "/queues/:name/events",
        stream,
        Doc(
            "Named events of one queue (SSE)",
            "Events",
            content_type="text/event-stream",
            description=doc,
            errors=(401, 404, 429),
        ),
        kind=Kind.STREAM,
    )

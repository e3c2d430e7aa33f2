"""SSE: `GET /events` and `GET /events/queues/:queue`. A connection message with a
clientId, then one unnamed `data:` message per engine event; a comment line as
keep-alive; a bounded buffer per client (a client too slow to keep up is told why and
disconnected)."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from typing import TYPE_CHECKING

import orjson

from hopper.server.events import Subscriber
from hopper.server.http import Receive, Request, Send
from hopper.server.router import Router

if TYPE_CHECKING:
    from hopper.server.app import ServerState

KEEPALIVE_S = 15.0
OVERFLOW = b'data: {"ok":false,"error":"Event buffer overflow: client too slow, disconnecting"}\n\n'


async def _watch_disconnect(receive: Receive, sub: Subscriber) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
    sub.close()


def register(router: Router, state: ServerState) -> None:
    async def stream(req: Request, send: Send, cors: list[tuple[bytes, bytes]]) -> None:
        sub = state.hub.subscribe(req.params.get("queue"))
        state.connections["sse"] += 1
        watcher = asyncio.create_task(_watch_disconnect(req.receive, sub))
        try:
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [
                        (b"content-type", b"text/event-stream"),
                        (b"cache-control", b"no-cache"),
                        (b"connection", b"keep-alive"),
                        (b"x-accel-buffering", b"no"),
                        *cors,
                    ],
                }
            )
            hello = orjson.dumps({"connected": True, "clientId": str(uuid.uuid4())})
            await send(
                {
                    "type": "http.response.body",
                    "body": b"data: " + hello + b"\n\n",
                    "more_body": True,
                }
            )
            while not sub.closed:
                batch = await sub.wait(KEEPALIVE_S)
                if sub.closed:
                    break
                if sub.overflowed:
                    await send({"type": "http.response.body", "body": OVERFLOW})
                    return
                body = (
                    b"".join(b"data: " + e + b"\n\n" for e in batch)
                    if batch
                    else b": keepalive\n\n"
                )
                await send({"type": "http.response.body", "body": body, "more_body": True})
            # Closed by the server (shutdown) or the client: end the response; a client
            # that is gone makes this send fail, which changes nothing.
            with contextlib.suppress(Exception):
                await send({"type": "http.response.body", "body": b""})
        except OSError:
            pass  # the client went away mid-send
        finally:
            watcher.cancel()
            state.hub.unsubscribe(sub)
            state.connections["sse"] -= 1

    router.add("GET", "/events", stream, streaming=True)
    router.add("GET", "/events/queues/:queue", stream, streaming=True)

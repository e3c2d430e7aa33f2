"""One SSE response driven by a hub subscription, shared by the job server's streams and
the management API's named-event streams: headers, a hello frame, batches as they come,
a comment line as keep-alive, an overflow notice for a client too slow to keep up, and
a clean end when either side closes."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

from hopper.server.events import Subscriber
from hopper.server.http import Receive, Send

KEEPALIVE_S = 15.0


async def _watch_disconnect(receive: Receive, sub: Subscriber) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
    sub.close()


async def pump(
    receive: Receive,
    send: Send,
    cors: list[tuple[bytes, bytes]],
    sub: Subscriber,
    hello: bytes,
    overflow: bytes,
    wrap: Callable[[bytes], bytes] | None = None,
) -> None:
    """Streams `sub` until it closes. `wrap` frames each buffered item (None: the items
    are frames already)."""
    watcher = asyncio.create_task(_watch_disconnect(receive, sub))
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
        await send({"type": "http.response.body", "body": hello, "more_body": True})
        while not sub.closed:
            batch = await sub.wait(KEEPALIVE_S)
            if sub.closed:
                break
            if sub.overflowed:
                await send({"type": "http.response.body", "body": overflow})
                return
            if not batch:
                body = b": keepalive\n\n"
            elif wrap is None:
                body = b"".join(batch)
            else:
                body = b"".join(wrap(e) for e in batch)
            await send({"type": "http.response.body", "body": body, "more_body": True})
        # Closed by the server (shutdown) or the client: end the response; a client that
        # is gone makes this send fail, which changes nothing.
        with contextlib.suppress(Exception):
            await send({"type": "http.response.body", "body": b""})
    except OSError:
        pass  # the client went away mid-send
    finally:
        watcher.cancel()

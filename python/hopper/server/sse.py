"""One SSE response driven by a hub subscription, shared by the job server's streams and
the management API's named-event streams: headers, a hello frame, everything queued
written as one chunk, a comment line as keep-alive, an overflow notice for a client
that stopped reading, and a clean end when either side closes."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

from hopper.server.events import DROP_GRACE_S, Subscriber, item_size
from hopper.server.http import Headers, Request, Stream

KEEPALIVE_S = 15.0
SSE_HEADERS: Headers = [
    ("content-type", "text/event-stream"),
    ("cache-control", "no-cache"),
    ("connection", "keep-alive"),
    ("x-accel-buffering", "no"),
]


async def _last_words(stream: Stream, notice: bytes) -> None:
    await stream.write(notice)
    await stream.end()


async def _watch_disconnect(req: Request, sub: Subscriber) -> None:
    await req.disconnected()
    sub.close()


async def pump(
    req: Request,
    stream: Stream,
    cors: Headers,
    sub: Subscriber,
    hello: bytes,
    overflow: bytes,
    wrap: Callable[[bytes], bytes] | None = None,
) -> None:
    """Streams `sub` until it closes. `wrap` frames each queued item (None: the items
    are frames already)."""
    watcher = asyncio.create_task(_watch_disconnect(req, sub))
    try:
        await stream.open(200, [*SSE_HEADERS, *cors])
        await stream.write(hello)
        while not sub.closed:
            batch = await sub.take(KEEPALIVE_S)
            if sub.closed:
                break
            if sub.dropped:
                # The notice, then the end of the response (an unfinished one is cut off
                # with what is still buffered); bounded, as it waits for a client that
                # stopped reading.
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(_last_words(stream, overflow), DROP_GRACE_S)
                return
            if not batch:
                await stream.write(b": keepalive\n\n")
                continue
            items = [item for item, _ in batch]
            body = b"".join(items) if wrap is None else b"".join(wrap(e) for e in items)
            await stream.write(body)
            sub.sent(sum(item_size(i) for i in items))
        # Closed by the server (shutdown) or the client: end the response; a client that
        # is gone makes this fail, which changes nothing.
        with contextlib.suppress(Exception):
            await stream.end()
    except OSError:
        pass  # the client went away mid-send
    finally:
        watcher.cancel()

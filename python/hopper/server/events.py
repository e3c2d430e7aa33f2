"""Fans engine events out to SSE and WebSocket subscribers.

The hub listens to the engine only while it has subscribers (the engine then stops
recording events, which cost a copy of each payload). Each subscriber has a bounded
buffer: a consumer that falls behind by more than `limit` events is marked overflowed
and its connection is closed with a reason, so a slow client cannot grow server memory."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable

from hopper.engine import Engine
from hopper.notify import EventBatch

DEFAULT_BUFFER = 10_000
# A buffer is also bounded by bytes: 10,000 events of 1 MB payloads would be 10 GB.
DEFAULT_BUFFER_BYTES = 16 * 1024 * 1024


# (eventType, event JSON, the next event's type in the batch) -> what to buffer, or None.
Framer = Callable[[str, bytes, str | None], bytes | None]


class Subscriber:
    """One stream's buffer. `frame` turns engine events into what this stream sends (the
    job server's streams send them as they are); `accept` filters queues (an allow-list)."""

    def __init__(
        self,
        queue: str | None,
        limit: int = DEFAULT_BUFFER,
        frame: Framer | None = None,
        accept: Callable[[str], bool] | None = None,
    ) -> None:
        self.queue = queue
        self.limit = limit
        self.frame = frame
        self.accept = accept
        self.buffer: deque[bytes] = deque()
        self.overflowed = False
        self.bytes = 0
        self.closed = False
        self._ready = asyncio.Event()

    def close(self) -> None:
        """The connection ended: wake the sender so it stops."""
        self.closed = True
        self._ready.set()

    def offer(self, event: bytes) -> None:
        if self.overflowed:
            return
        if len(self.buffer) >= self.limit or self.bytes + len(event) > DEFAULT_BUFFER_BYTES:
            self.overflowed = True
            self.buffer.clear()
            self.bytes = 0
        else:
            self.buffer.append(event)
            self.bytes += len(event)
        self._ready.set()

    async def wait(self, timeout: float) -> list[bytes]:
        """Everything buffered, waiting up to `timeout` s for the first event ([] on timeout)."""
        if not self.buffer and not self.overflowed and not self.closed:
            self._ready.clear()
            try:
                await asyncio.wait_for(self._ready.wait(), timeout)
            except asyncio.TimeoutError:
                return []
        batch = list(self.buffer)
        self.buffer.clear()
        self.bytes = 0
        return batch


class EventHub:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._by_queue: dict[str | None, set[Subscriber]] = {}
        self._count = 0
        self._unsubscribe: Callable[[], None] | None = None

    def subscribe(
        self,
        queue: str | None,
        limit: int = DEFAULT_BUFFER,
        frame: Framer | None = None,
        accept: Callable[[str], bool] | None = None,
    ) -> Subscriber:
        sub = Subscriber(queue, limit, frame, accept)
        self._by_queue.setdefault(queue, set()).add(sub)
        self._count += 1
        if self._unsubscribe is None:
            self._unsubscribe = self._engine.subscribe(self._on_batch)
        return sub

    def unsubscribe(self, sub: Subscriber) -> None:
        sub.close()
        subs = self._by_queue.get(sub.queue)
        if subs is None or sub not in subs:
            return
        subs.discard(sub)
        if not subs:
            del self._by_queue[sub.queue]
        self._count -= 1
        if self._count == 0 and self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None

    def close_all(self) -> None:
        """Ends every subscription (shutdown): streams finish, sockets close."""
        for subs in list(self._by_queue.values()):
            for sub in list(subs):
                sub.close()

    def _on_batch(self, batch: EventBatch) -> None:
        everyone = self._by_queue.get(None, ())
        last = len(batch) - 1
        for i, (kind, queue, raw) in enumerate(batch):
            # Each framing of an event is built once, whatever the number of streams.
            framed: dict[Framer, bytes | None] | None = None
            for subs in (everyone, self._by_queue.get(queue, ())):
                for sub in subs:
                    if sub.frame is None:
                        sub.offer(raw)
                    elif sub.accept is None or sub.accept(queue):
                        if framed is None:
                            framed = {}
                        if sub.frame not in framed:
                            next_kind = batch[i + 1][0] if i < last else None
                            framed[sub.frame] = sub.frame(kind, raw, next_kind)
                        item = framed[sub.frame]
                        if item is not None:
                            sub.offer(item)

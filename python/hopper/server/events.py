"""Fans engine events out to SSE and WebSocket consumers, with back-pressure that is fair.

Each consumer has one outbox (`Subscriber`): what is queued for it and not yet sent,
events and (on a WebSocket) command replies in order, written by one writer. The hub
listens to the engine only while it has subscribers (the engine then stops recording
events, which cost a copy of each payload).

The rules, by unsent bytes of an outbox:
- over `SOFT_BYTES` while its consumer still reads: the server is behind its producers,
  so `FlowGate.wait` holds producers (the next WebSocket command is not read, a mutating
  HTTP request waits) until the outbox is back under it;
- a consumer that has not taken a byte for `STALL_S` has stopped reading: it no longer
  holds anyone up, and once over `HARD_BYTES` it is dropped with a reason;
- over `CEILING_BYTES` any consumer is dropped (events the gate cannot hold back, such as
  a million delayed jobs falling due at once, must not grow memory without bound)."""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Callable
from time import monotonic
from typing import Protocol

from hopper.engine import Engine
from hopper.notify import EventBatch

SOFT_BYTES = 1024 * 1024
HARD_BYTES = 16 * 1024 * 1024
CEILING_BYTES = 64 * 1024 * 1024
STALL_S = 1.0
# After a drop, how long its reason may wait for a consumer that stopped reading (the
# reason can only reach one that reads again); then the connection is let go.
DROP_GRACE_S = 30.0
# What an item costs beyond its bytes (the bytes object, the deque slot, the tuple).
ITEM_OVERHEAD = 64

# (eventType, event JSON, the next event's type in the batch) -> what to queue, or None.
Framer = Callable[[str, bytes, str | None], bytes | None]
# Before an item may be sent, the log must have reached this (written LSN, synced LSN).
CommitTarget = tuple[int, int]


class Subscriber:
    """One consumer's outbox. `frame` turns engine events into what this consumer sends
    (None: as they are); `accept` filters queues (an allow-list)."""

    def __init__(
        self,
        gate: FlowGate,
        queue: str | None,
        frame: Framer | None = None,
        accept: Callable[[str], bool] | None = None,
    ) -> None:
        self.gate = gate
        self.queue = queue
        self.frame = frame
        self.accept = accept
        self.buffer: deque[tuple[bytes, CommitTarget | None]] = deque()
        self.bytes = 0  # queued or being sent
        self.dropped = False
        self.closed = False
        self.on_drop: Callable[[], None] | None = None
        self.progress_at = gate.clock()
        self._ready = asyncio.Event()

    def close(self) -> None:
        """The connection ended (or the server is stopping): wake the writer to stop."""
        self.closed = True
        self._release()

    def offer(self, item: bytes, target: CommitTarget | None = None) -> None:
        if self.dropped or self.closed:
            return
        if not self.bytes:
            self.progress_at = self.gate.clock()  # the clock of a stall starts now
        self.buffer.append((item, target))
        self.bytes += item_size(item)
        if self.bytes > SOFT_BYTES:
            self._over_soft()
        self._ready.set()

    def _over_soft(self) -> None:
        if self.bytes > CEILING_BYTES or (
            self.bytes > HARD_BYTES and self.stalled(self.gate.clock())
        ):
            self.drop()
        else:
            self.gate.heavy.add(self)

    def stalled(self, now: float) -> bool:
        """Nothing taken for STALL_S while something waits: the consumer stopped reading."""
        return self.bytes > 0 and now - self.progress_at > STALL_S

    def drop(self) -> None:
        self.dropped = True
        self._release()
        if self.on_drop is not None:
            self.on_drop()

    def _release(self) -> None:
        self.buffer.clear()
        self.bytes = 0
        self.gate.relieved(self)
        self._ready.set()

    async def take(self, timeout: float | None = None) -> list[tuple[bytes, CommitTarget | None]]:
        """Everything queued, waiting up to `timeout` s for something ([] on timeout, or
        once closed or dropped). The bytes stay counted until `sent`."""
        if not self.buffer and not self.dropped and not self.closed:
            self._ready.clear()
            if timeout is None:
                await self._ready.wait()
            else:
                try:
                    await asyncio.wait_for(self._ready.wait(), timeout)
                except TimeoutError:
                    return []
        batch = list(self.buffer)
        self.buffer.clear()
        return batch

    def sent(self, size: int) -> None:
        """The writer handed `size` bytes (as counted by `offer`) to the connection."""
        self.progress_at = self.gate.clock()
        self.bytes = max(0, self.bytes - size)
        if self.bytes <= SOFT_BYTES and self in self.gate.heavy:
            self.gate.relieved(self)


def item_size(item: bytes) -> int:
    """What `offer` counted for `item`, for `Subscriber.sent`."""
    return len(item) + ITEM_OVERHEAD


class FlowGate:
    """Holds producers while a consumer that reads is behind (see the module notes)."""

    def __init__(self, clock: Callable[[], float] = monotonic) -> None:
        self.clock = clock  # seconds; injectable for tests
        self.heavy: set[Subscriber] = set()
        self._changed = asyncio.Event()

    def relieved(self, sub: Subscriber) -> None:
        if sub in self.heavy:
            self.heavy.discard(sub)
            self._changed.set()

    async def wait(self) -> None:
        """Returns once no reading consumer is over SOFT_BYTES. Call only when `heavy`."""
        while self.heavy:
            now = self.clock()
            waiting_on = 0.0
            for sub in list(self.heavy):
                if sub.stalled(now):
                    if sub.bytes > HARD_BYTES:
                        sub.drop()
                    continue
                waiting_on = max(waiting_on, STALL_S - (now - sub.progress_at))
            if waiting_on <= 0:
                return
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), waiting_on + 0.001)


class Sink(Protocol):
    """What the hub feeds: an outbox (`Subscriber`) or a connection that writes events
    itself (a TCP protocol session)."""

    queue: str | None
    frame: Framer | None
    accept: Callable[[str], bool] | None

    def offer(self, item: bytes) -> None: ...
    def close(self) -> None: ...


class _Nudge:
    """A sink that only notes that its queue had an event (a WaitJob's wake-up)."""

    frame: Framer | None = None
    accept: Callable[[str], bool] | None = None

    def __init__(self, queue: str) -> None:
        self.queue: str | None = queue
        self.event = asyncio.Event()
        self.closed = False

    def offer(self, item: bytes) -> None:
        self.event.set()

    def close(self) -> None:
        self.closed = True
        self.event.set()


class EventHub:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self.gate = FlowGate()
        self._by_queue: dict[str | None, set[Sink]] = {}
        self._count = 0
        self._unsubscribe: Callable[[], None] | None = None

    def subscribe(
        self,
        queue: str | None,
        frame: Framer | None = None,
        accept: Callable[[str], bool] | None = None,
    ) -> Subscriber:
        sub = Subscriber(self.gate, queue, frame, accept)
        self.attach(sub)
        return sub

    def attach(self, sink: Sink) -> None:
        """Feeds `sink` the events of its queue (all queues for None)."""
        self._by_queue.setdefault(sink.queue, set()).add(sink)
        self._count += 1
        if self._unsubscribe is None:
            self._unsubscribe = self._engine.subscribe(self._on_batch)

    def unsubscribe(self, sub: Sink) -> None:
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

    async def wait_for_event(
        self, queue: str, timeout: float, attempt: Callable[[], bytes | None]
    ) -> bytes | None:
        """Runs `attempt` until it returns something or `timeout` seconds pass, trying
        again after each event of `queue` (a job's completion is one). None on timeout
        or shutdown."""
        nudge = _Nudge(queue)
        self.attach(nudge)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        try:
            while not nudge.closed:
                nudge.event.clear()
                got = attempt()
                if got is not None:
                    return got
                remaining = deadline - loop.time()
                if remaining <= 0:
                    return None
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(nudge.event.wait(), remaining)
            return None
        finally:
            self.unsubscribe(nudge)

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

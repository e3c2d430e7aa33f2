"""Bridges the engine's notification fd to an asyncio loop: one `add_reader`, and on
each wake-up one call that drains every event and every queue that got work, and one
pass that answers every commit the log's progress has reached."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Protocol

from hopper._engine import Core, UnavailableError

EventBatch = list[tuple[str, str, bytes]]
EventListener = Callable[[EventBatch], None]


class _Drainable(Protocol):
    def take_notifications(self) -> tuple[EventBatch, list[str]]: ...
    def notify_fd(self) -> int: ...
    def log_progress(self) -> tuple[int, int]: ...
    def write_log(self) -> None: ...
    def request_sync(self, lsn: int) -> None: ...
    def storage_error(self) -> str | None: ...


class LoopWatcher:
    """Watches one engine's fd on one loop; wakes `wait_for_queue` callers, settles
    `committed` futures and feeds event listeners."""

    def __init__(self, loop: asyncio.AbstractEventLoop, core: Core | _Drainable) -> None:
        self.loop = loop
        self._core = core
        self._fd = core.notify_fd()
        self._listeners: list[EventListener] = []
        self._waiters: dict[str, list[asyncio.Future[None]]] = {}
        # (LSN to see written, LSN to see synced, future) per waiting answer.
        self._commits: list[tuple[int, int, asyncio.Future[None]]] = []
        self._write_scheduled = False
        self._interrupted = False
        loop.add_reader(self._fd, self._on_readable)

    def add_listener(self, listener: EventListener) -> Callable[[], None]:
        self._listeners.append(listener)

        def unsubscribe() -> None:
            if listener in self._listeners:
                self._listeners.remove(listener)

        return unsubscribe

    @property
    def has_listeners(self) -> bool:
        return bool(self._listeners)

    async def wait_for_queue(self, queue: str, timeout: float | None) -> bool:
        """Waits until the engine reports work on `queue`; False on timeout or after
        `interrupt`."""
        if self._interrupted:
            return False
        fut: asyncio.Future[None] = self.loop.create_future()
        self._waiters.setdefault(queue, []).append(fut)
        try:
            await asyncio.wait_for(fut, timeout)
            return not self._interrupted
        except asyncio.TimeoutError:
            return False
        finally:
            waiting = self._waiters.get(queue)
            if waiting is not None and fut in waiting:
                waiting.remove(fut)
                if not waiting:
                    del self._waiters[queue]

    def committed(self, written: int, synced: int) -> asyncio.Future[None]:
        """A future done once the log has handed `written` to the OS and synced
        `synced` (UnavailableError if storage fails first). A plain future, not a
        coroutine: a request awaits it directly, one suspension and no frames."""
        fut: asyncio.Future[None] = self.loop.create_future()
        self._commits.append((written, synced, fut))
        if synced:
            self._core.request_sync(synced)
        if not self._write_scheduled:
            # Once per batch: the requests handled before it runs share one write.
            self._write_scheduled = True
            self.loop.call_soon(self._write)
        return fut

    def _write(self) -> None:
        """Writes the log on this thread (one `pwrite`, no hand-off to the writer
        thread and back through the fd) and answers every waiter it covers."""
        self._write_scheduled = False
        self._core.write_log()
        self._settle_commits()

    def _settle_commits(self) -> None:
        """One pass over the waiters: answers those the log has reached, fails the
        rest if storage has failed."""
        if not self._commits:
            return
        written, durable = self._core.log_progress()
        waiting = []
        for entry in self._commits:
            want_written, want_synced, fut = entry
            if fut.done():
                continue
            if want_written <= written and want_synced <= durable:
                fut.set_result(None)
            else:
                waiting.append(entry)
        if waiting:
            failure = self._core.storage_error()
            if failure is not None:
                for _written, _synced, fut in waiting:
                    fut.set_exception(UnavailableError(failure))
                waiting = []
        self._commits = waiting

    def _on_readable(self) -> None:
        # take_notifications clears the fd first: a sync landing after that re-signals.
        events, woken = self._core.take_notifications()
        self._settle_commits()
        if events:
            for listener in list(self._listeners):
                listener(events)
        for queue in woken:
            for fut in self._waiters.pop(queue, []):
                if not fut.done():
                    fut.set_result(None)

    def interrupt(self) -> None:
        """Ends every wait now and refuses new ones (the server is shutting down)."""
        self._interrupted = True
        for waiting in self._waiters.values():
            for fut in waiting:
                if not fut.done():
                    fut.set_result(None)

    def close(self) -> None:
        self.loop.remove_reader(self._fd)
        for waiting in self._waiters.values():
            for fut in waiting:
                fut.cancel()
        self._waiters.clear()
        for _written, _synced, fut in self._commits:
            fut.cancel()
        self._commits.clear()
        self._listeners.clear()

"""The engine as the servers drive it: request bytes in and JSON bytes out (the engine
parses and renders them, Python only routes), and answers that wait, on the event loop,
for their records to be written. `hopper.Engine` stays the embedded API; what only a
server needs lives here."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, TypeVar

from hopper._engine import ProtocolSession
from hopper.engine import Engine
from hopper.notify import LoopWatcher

R = TypeVar("R")


class ServerEngine(Engine):
    """An `Engine` whose calls never block on the log: a request handler awaits
    `commit()` (or `commit_target()` then `wait_committed()`) before it answers.

    The wire-format calls every request makes are the extension's own methods, bound
    in `__init__` (no Python frame in between): `*_body` takes request bytes, `*_json`
    returns JSON bytes."""

    push_body_json: Callable[[str, bytes], bytes]
    """Pushes a job-server push body; returns the id as a JSON string."""
    push_many_body_json: Callable[[str, bytes], bytes]
    """Pushes a JSON array of push bodies, or `{"jobs": [...]}`, all or none; returns
    the ids as a JSON array."""
    pull_json: Callable[[str, int], tuple[bytes, str] | None]
    """Leases the next job to an owner: (job JSON, lock token), or None."""
    get_json: Callable[[str], bytes | None]
    ack_body: Callable[[str, bytes], None]
    """Acks from a job-server body `{result?, token?}` (empty = `{}`)."""
    fail_body: Callable[[str, bytes], int | None]
    """Fails from a job-server body `{error?, token?}`; returns the retry delay or None."""
    slot_lost: Callable[[], str | None]
    """Why this engine can no longer serve its cluster slot, if so (None outside
    cluster mode)."""
    slot_handoff: Callable[[], str | None]
    """The broker this engine's cluster slot should move to (it ranks first for it), if
    any."""
    commit_target: Callable[[], tuple[int, int] | None]
    """What `commit()` would wait for now: (LSN to see written, LSN to see synced), or
    None. `commit()` in two halves, for callers that answer later."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        core = self._core
        core.set_block_on_commit(False)
        self._served: LoopWatcher | None = None
        self.push_body_json = core.push_body_json
        self.push_many_body_json = core.push_many_body_json
        self.pull_json = core.pull_json
        self.get_json = core.get_json
        self.ack_body = core.ack_body
        self.fail_body = core.fail_body
        self.commit_target = core.commit_target
        self.slot_lost = core.slot_lost
        self.slot_handoff = core.slot_handoff

    def serve_on(self, loop: asyncio.AbstractEventLoop) -> None:
        """Binds the commit waits to the server's loop once, so a request does not look
        the running loop up (in CPython 3.11 that is a getpid() system call each time)."""
        self._served = self._watch(loop)

    def _watcher_here(self) -> LoopWatcher:
        served = self._served
        return served if served is not None else self._watch(asyncio.get_running_loop())

    # ----- wire format (`*_body` takes request bytes, `*_json` returns JSON bytes) -----

    def push_body(self, queue: str, body: bytes) -> tuple[str, bool]:
        """Pushes a job-server push body (JSON bytes). Returns (id, duplicate)."""
        job_id, duplicate, _durable = self._core.push_body(queue, body)
        return job_id, duplicate

    async def pull_json_async(
        self, queue: str, timeout: float, owner: int = 0
    ) -> tuple[bytes, str] | None:
        """`pull_json`, waiting up to `timeout` seconds for a job (long poll)."""
        return await self._await_work(queue, timeout, lambda: self._core.pull_json(queue, owner))

    async def wait_for(
        self, queue: str, timeout: float, attempt: Callable[[], R | None]
    ) -> R | None:
        """Runs `attempt` until it returns something or `timeout` seconds pass, waking
        when `queue` gets work (a protocol session's long poll)."""
        return await self._await_work(queue, timeout, attempt)

    def protocol_session(
        self,
        owner: int,
        *,
        json: bool = False,
        tokens: list[bytes] | None = None,
        authenticated: bool = False,
        rate: tuple[int, int] | None = None,
    ) -> ProtocolSession:
        """A connection speaking bunqueue's protocol (TCP MessagePack, or WebSocket JSON
        with `json`), run by the engine: see `hopper._engine.ProtocolSession`."""
        return ProtocolSession(
            self._core,
            owner,
            json=json,
            tokens=tokens or [],
            authenticated=authenticated,
            rate=rate,
        )

    # ----- answering after the log ---------------------------------------------------

    async def commit(self) -> None:
        """Waits, without blocking the loop, until every call made so far that changed
        state has its record handed to the OS (a killed process keeps it), and synced
        where the fsync policy or `durable` requires. Raises UnavailableError if storage
        fails first. Cheap when there is nothing to wait for."""
        pending = self.commit_pending()
        if pending is not None:
            await pending

    def commit_pending(self) -> asyncio.Future[None] | None:
        """`commit()` without its coroutine, for the dispatchers' hot path: a future to
        await, or None when there is nothing to wait for. Call on the running loop."""
        target = self.commit_target()
        if target is None:
            return None
        return (self._served or self._watcher_here()).committed(*target)

    async def wait_committed(self, target: tuple[int, int]) -> None:
        await self._watcher_here().committed(*target)

    def interrupt_waits(self) -> None:
        """Makes every pending long poll return None now, and later ones return at once
        (the server is shutting down)."""
        if self._watcher is not None:
            self._watcher.interrupt()

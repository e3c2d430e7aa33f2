"""What every layer of the server shares: the engine, the configuration, the event hub,
connection counters and the tasks and sockets a shutdown must end. It sits at the bottom
of the server package: it imports no route, API or interface module."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any, Protocol

from hopper._engine import PendingPull
from hopper.errors import HopperError
from hopper.server.config import ServerConfig
from hopper.server.events import EventHub
from hopper.server.prometheus import Metrics
from hopper.server.server_engine import ServerEngine
from hopper.server.throughput import Throughput
from hopper.server.webhooks import Webhooks


class Closable(Protocol):
    """A WebSocket connection, as a shutdown sees it."""

    def go_away(self) -> None: ...


class ServerState:
    def __init__(self, config: ServerConfig, engine: ServerEngine) -> None:
        self.config = config
        self.engine = engine
        self.hub = EventHub(engine)
        self.started = time.time()
        self.connections = {"tcp": 0, "ws": 0, "sse": 0}
        self.throughput = Throughput()
        self.metrics = Metrics(engine, self.connections)
        self.webhooks = Webhooks(config, self.hub, engine)
        self.webhooks.load()
        # Lease owners: one per WebSocket and per HTTP long poll, so that a connection's
        # jobs can go back to waiting when it ends.
        self.owner_ids = iter(range(1, 2**62))
        self.sockets: set[Closable] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    def uptime_s(self) -> int:
        """Whole seconds since the server started."""
        return int(time.time() - self.started)

    async def settle(
        self, pending: PendingPull, attempt: Callable[[], bytes | None]
    ) -> bytes | None:
        """Waits for what a protocol command waits on (`attempt` answers it): work on its
        queue for a long poll, an event of its queue for a WaitJob. None when its time
        is up or the server is stopping."""
        timeout = pending.timeout_ms / 1000
        try:
            if pending.waits_for_completion:
                return await self.hub.wait_for_event(pending.queue, timeout, attempt)
            return await self.engine.wait_for(pending.queue, timeout, attempt)
        except HopperError:
            return None

    def track(self, coro: Any) -> None:
        """Runs `coro` as a task the state keeps alive until it ends."""
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def closes_sent(self, timeout: float) -> None:
        """Waits (bounded) for the WebSocket closing handshakes `begin_shutdown` started:
        a socket leaves `sockets` when its client has answered the close frame."""
        deadline = asyncio.get_running_loop().time() + timeout
        pending = [t for t in self._tasks if t is not asyncio.current_task()]
        if pending:
            await asyncio.wait(pending, timeout=timeout)
        await self.webhooks.stopped(max(0.0, deadline - asyncio.get_running_loop().time()))
        while self.sockets and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.01)

    def begin_shutdown(self) -> None:
        """SIGTERM/SIGINT: end long polls, SSE streams and WebSockets so that Granian's
        wait for in-flight requests finishes promptly; stop sending webhooks."""
        for conn in list(self.sockets):
            conn.go_away()
        self.engine.interrupt_waits()
        self.hub.close_all()
        self.webhooks.stop()

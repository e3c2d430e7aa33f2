"""bunqueue's binary TCP protocol (its SDK's transport) on `TCP_PORT`, in the server's
process and event loop, on the same engine as HTTP.

A connection's bytes go to its `ProtocolSession` in the engine extension, which splits
frames, runs every whole frame's command under one engine lock and returns the reply
frames as one buffer: no Python object is made for a frame's payload. Python only owns
what needs the event loop: writing replies once the log has their records, long-polling
pulls (a session allows 50 at a time; frames behind them wait), the event subscription,
the partial-frame idle timeout and the write-queue bound."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import sys
from collections.abc import Callable
from functools import partial

from hopper._engine import PendingPull, event_frame
from hopper.errors import HopperError
from hopper.server import server_commands
from hopper.server.config import ServerConfig
from hopper.server.events import Framer
from hopper.server.state import ServerState


def frame_event(kind: str, raw: bytes, next_kind: str | None) -> bytes | None:
    """The hub's framer for TCP subscribers: one MessagePack event frame per event,
    shared by every subscriber of its queue."""
    return event_frame(raw)


class EventSink:
    """A connection's `SubscribeEvents`: the hub writes its queue's events straight to
    the connection (the connection's write bound applies)."""

    def __init__(self, conn: TcpConnection, queue: str) -> None:
        self.conn = conn
        self.queue: str | None = queue
        self.frame: Framer | None = frame_event
        self.accept: Callable[[str], bool] | None = None

    def offer(self, item: bytes) -> None:
        self.conn.write(item)

    def close(self) -> None:
        """The hub is closing every stream (shutdown); the connection ends on its own."""


class TcpListener:
    """The listening socket and its connections."""

    def __init__(self, state: ServerState, config: ServerConfig) -> None:
        self.state = state
        self.config = config
        self.tokens = [t.encode() for t in config.auth_tokens]
        limit = config.rate_limit_max_requests
        self.rate = None if limit == float("inf") else (int(limit), config.rate_limit_window_ms)
        self._server: asyncio.AbstractServer | None = None

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Binds and listens now (a busy port fails the start-up), then serves on `loop`."""
        family = socket.AF_INET6 if ":" in self.config.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self.config.host, self.config.tcp_port))
            sock.listen(1024)
        except OSError:
            sock.close()
            raise
        sock.setblocking(False)
        self.state.track(self._serve(loop, sock))
        self.state.sockets.add(self)

    async def _serve(self, loop: asyncio.AbstractEventLoop, sock: socket.socket) -> None:
        self._server = await loop.create_server(lambda: TcpConnection(self), sock=sock)

    def go_away(self) -> None:
        """Shutdown: accept no more connections (those open answer what is in flight)."""
        if self._server is not None:
            self._server.close()
        self.state.sockets.discard(self)


class TcpConnection(asyncio.Protocol):
    def __init__(self, listener: TcpListener) -> None:
        self.listener = listener
        self.state = listener.state
        self.engine = listener.state.engine
        config = listener.config
        self.idle_s = config.tcp_idle_timeout_ms / 1000
        self.max_queue = config.tcp_max_write_queue_bytes
        self.session = self.engine.protocol_session(
            next(self.state.owner_ids), tokens=listener.tokens, rate=listener.rate
        )
        self.transport: asyncio.Transport | None = None
        self.polls: set[asyncio.Task[None]] = set()
        self.sink: EventSink | None = None
        self.idle: asyncio.TimerHandle | None = None
        self.unsent = 0  # reply buffers waiting for the log
        self.reading = True
        self.going_away = False

    # ----- asyncio callbacks ------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's TCPTransport
        self.state.connections["tcp"] += 1
        self.state.sockets.add(self)

    def data_received(self, data: bytes) -> None:
        self.run(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.state.connections["tcp"] -= 1
        self.state.sockets.discard(self)
        if self.idle is not None:
            self.idle.cancel()
        for task in list(self.polls):
            task.cancel()
        self.subscribe(None)
        self.session.close()

    # ----- commands ---------------------------------------------------------------------

    def run(self, data: bytes) -> None:
        if self.going_away or self.transport is None or self.transport.is_closing():
            return
        try:
            out, waits, pending, changed, queue, close = self.session.feed(data)
        except HopperError as e:  # an engine bug: this connection ends, the server goes on
            print(f"[ERROR] hopper: TCP connection dropped: {e}", file=sys.stderr)
            self.transport.abort()
            return
        if out:
            self.send(out, waits)
        for p in pending:
            if p.server_command in server_commands.CHANGES:
                task = asyncio.ensure_future(self.change(p))
            elif p.server_command is not None:
                reply = server_commands.answer(self.state, p.server_command, p.server_request)
                self.send(self.session.answer(p, reply), False)
                continue
            else:
                task = asyncio.ensure_future(self.long_poll(p))
            self.polls.add(task)
            task.add_done_callback(self.polls.discard)
        if changed:
            self.subscribe(queue)
        if close:
            self.going_away = True
            self.close_when_sent()
            return
        self.pace()

    def pace(self) -> None:
        """Reads on only while frames can run, and times out a partial frame."""
        assert self.transport is not None
        blocked = self.session.blocked
        if blocked and self.reading:
            self.transport.pause_reading()
        elif not blocked and not self.reading:
            self.transport.resume_reading()
        self.reading = not blocked
        if self.idle is not None:
            self.idle.cancel()
            self.idle = None
        if self.session.partial_bytes:
            loop = asyncio.get_running_loop()
            self.idle = loop.call_later(self.idle_s, self.transport.abort)

    async def long_poll(self, pending: PendingPull) -> None:
        reply = await self.state.settle(pending, partial(self.session.retry, pending))
        self.finish(reply if reply is not None else self.session.expire(pending))

    async def change(self, pending: PendingPull) -> None:
        """A webhook change: answered once the registry's write is done."""
        assert pending.server_command is not None
        reply = await server_commands.answer_change(
            self.state, pending.server_command, pending.server_request
        )
        self.finish(self.session.answer(pending, reply))

    def finish(self, out: bytes) -> None:
        """Sends the answer of a command that ran in a task (it held a running place)."""
        self.send(out, False)
        current = asyncio.current_task()
        if current is not None:
            self.polls.discard(current)  # so that a shutdown sees this poll answered
        if not self.going_away:
            self.run(b"")  # frames held behind the running limit may go now
        else:
            self.close_when_sent()

    def subscribe(self, queue: str | None) -> None:
        if self.sink is not None:
            self.state.hub.unsubscribe(self.sink)
            self.sink = None
        if queue is not None:
            self.sink = EventSink(self, queue)
            self.state.hub.attach(self.sink)

    # ----- writing ----------------------------------------------------------------------

    def send(self, out: bytes, waits: bool) -> None:
        """Writes replies, once the log has the records they answer for if `waits`."""
        waiting = self.engine.commit_pending() if waits else None
        if waiting is None:
            self.write(out)
            return
        self.unsent += 1
        waiting.add_done_callback(partial(self._committed, out))

    def _committed(self, out: bytes, done: asyncio.Future[None]) -> None:
        self.unsent -= 1
        if done.cancelled() or done.exception() is not None:
            # The log failed: nothing may be answered as done. The client sees the
            # connection drop and retries (the SDK rejects what was in flight).
            if self.transport is not None:
                self.transport.abort()
            return
        self.write(out)
        if self.going_away:
            self.close_when_sent()

    def write(self, data: bytes) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        transport.write(data)
        if transport.get_write_buffer_size() > self.max_queue:
            transport.abort()  # the client stopped reading: it may not hold memory forever

    # ----- ending -----------------------------------------------------------------------

    def go_away(self) -> None:
        """Shutdown: read no more; long polls answer empty (the engine interrupts
        them), replies in flight are written, then the connection closes."""
        self.going_away = True
        if self.transport is not None and self.reading:
            with contextlib.suppress(RuntimeError):
                self.transport.pause_reading()
            self.reading = False
        self.close_when_sent()

    def close_when_sent(self) -> None:
        if self.unsent or self.polls or self.transport is None:
            return
        self.transport.close()  # after what is buffered is written

"""WebSocket: `/ws` and `/ws/queues/:queue`. Broadcasts engine events (filtered by queue
on the second path) and answers bunqueue's commands in JSON, `reqId` echoed: the same
command table as the TCP port (`hopper._engine.ProtocolSession`), so a message is parsed
once, in the engine. Jobs pulled on a connection go back to waiting when it closes
(unless their lock was renewed).

One reader and one writer per socket. The reader runs each command and queues its reply
in the socket's outbox (`events.Subscriber`), which the hub also fills with events; the
writer sends the outbox in order, a reply to a state change once its record is written.
Back-pressure (see `events.py`): the reader stops taking commands while a consumer that
reads is behind, and a socket that stops reading is dropped with a reason."""

from __future__ import annotations

import asyncio
import contextlib
from functools import partial
from typing import Any

import orjson

from hopper._engine import PendingPull
from hopper.errors import HopperError
from hopper.server import server_commands
from hopper.server.events import DROP_GRACE_S, CommitTarget, Subscriber, item_size
from hopper.server.http import Request, Socket
from hopper.server.router import Kind, Router
from hopper.server.state import ServerState

GOING_AWAY = 1001
POLICY_VIOLATION = 1008
TOO_SLOW = "event buffer overflow: client too slow"
# Messages handed to the socket at once: bounds what is in flight past the outbox and
# lets a consumer that reads show progress between chunks.
SEND_CHUNK = 128


def reply(req_id: Any, body: dict[str, Any]) -> bytes:
    if req_id is not None:
        body["reqId"] = req_id
    return orjson.dumps(body)


class Connection:
    def __init__(
        self,
        state: ServerState,
        socket: Socket,
        sub: Subscriber,
    ) -> None:
        self.state = state
        self.socket = socket
        self.sub = sub
        tokens = [t.encode() for t in state.config.auth_tokens]
        # The upgrade already checked the token; `Auth` is accepted but not needed.
        self.session = state.engine.protocol_session(
            next(state.owner_ids), json=True, tokens=tokens, authenticated=True
        )
        self.polls: set[asyncio.Task[None]] = set()
        self.going_away = False

    def go_away(self) -> None:
        """Server shutdown: the writer drops what is queued and closes with 1001."""
        self.going_away = True
        self.sub.close()

    # ----- reading -------------------------------------------------------------------

    async def read(self) -> None:
        gate = self.state.hub.gate
        while True:
            if gate.heavy:
                await gate.wait()  # a consumer that reads is behind: take no more work
            try:
                raw = await self.socket.receive()
            except (OSError, RuntimeError):
                return
            if raw is None:
                return
            self.command(raw)

    def command(self, raw: bytes) -> None:
        """Runs one message through the protocol session (the TCP port's command table,
        in JSON) and queues its reply behind the log write it answers for."""
        if self.sub.closed or self.sub.dropped:
            return  # the connection is ending: take no more work
        out, waits, pending, _changed, _queue, _close = self.session.message(raw)
        if out:
            self.sub.offer(out, self.state.engine.commit_target() if waits else None)
        for p in pending:
            if p.server_command in server_commands.CHANGES:
                task = asyncio.create_task(self._change(p))
            elif p.server_command is not None:
                reply = server_commands.answer(self.state, p.server_command, p.server_request)
                self.sub.offer(self.session.answer(p, reply))
                continue
            else:
                # Wait in a task so later commands on this socket are not held up.
                task = asyncio.create_task(self._long_pull(p))
            self.polls.add(task)
            task.add_done_callback(self.polls.discard)

    async def _long_pull(self, pending: PendingPull) -> None:
        got = await self.state.settle(pending, partial(self.session.retry, pending))
        self.sub.offer(got if got is not None else self.session.expire(pending))

    async def _change(self, pending: PendingPull) -> None:
        """A webhook change: answered once the registry's write is done."""
        assert pending.server_command is not None
        reply = await server_commands.answer_change(
            self.state, pending.server_command, pending.server_request
        )
        self.sub.offer(self.session.answer(pending, reply))

    # ----- writing -------------------------------------------------------------------

    async def write(self) -> None:
        sub, socket = self.sub, self.socket
        while True:
            batch = await sub.take()
            if sub.dropped:
                await self._send_drop_notice()
                return
            if not batch:  # closed
                if self.going_away:
                    with contextlib.suppress(Exception):
                        await socket.close(GOING_AWAY, "server shutting down")
                return
            last = _last_target(batch)
            if last is not None:
                try:
                    # One wait covers the batch: targets only grow.
                    await self.state.engine.wait_committed(last)
                except HopperError as e:
                    batch = [(_as_error(item, e) if t else item, None) for item, t in batch]
            items = [item for item, _target in batch]
            for i in range(0, len(items), SEND_CHUNK):
                chunk = items[i : i + SEND_CHUNK]
                try:
                    await socket.send_all(chunk)
                except (OSError, RuntimeError):
                    return  # the peer is gone; the reader sees it too
                sub.sent(sum(item_size(item) for item in chunk))
                if sub.dropped:
                    break

    async def _send_drop_notice(self) -> None:
        """The reason goes as a last message (RSGI has no close reason) and in the close
        frame; both wait behind the send the client stopped reading."""
        with contextlib.suppress(Exception):
            await self.socket.send(reply(None, {"ok": False, "error": TOO_SLOW}))
            await self.socket.close(POLICY_VIOLATION, TOO_SLOW)

    def release(self) -> None:
        for task in list(self.polls):
            task.cancel()
        self.session.close()


def _last_target(batch: list[tuple[bytes, CommitTarget | None]]) -> CommitTarget | None:
    for _item, target in reversed(batch):
        if target is not None:
            return target
    return None


def _as_error(item: bytes, e: HopperError) -> bytes:
    """The reply of a command whose record could not be written (storage failed)."""
    req_id = orjson.loads(item).get("reqId")
    return reply(req_id, {"ok": False, "error": str(e)})


def register(router: Router, state: ServerState) -> None:
    async def handle(req: Request, socket: Socket) -> None:
        sub = state.hub.subscribe(req.params.get("queue"))
        conn = Connection(state, socket, sub)
        state.connections["ws"] += 1
        state.sockets.add(conn)
        writer = asyncio.create_task(conn.write())
        reader = asyncio.create_task(conn.read())
        dropped = asyncio.Event()
        sub.on_drop = dropped.set
        drop = asyncio.create_task(dropped.wait())
        try:
            await asyncio.wait((reader, writer, drop), return_when=asyncio.FIRST_COMPLETED)
        finally:
            state.hub.unsubscribe(sub)
            conn.release()
            state.connections["ws"] -= 1
            if sub.dropped or conn.going_away:
                # Let the reason or the close frame go out, bounded. The reader stays
                # until then: cancelling RSGI's pending receive first loses the close.
                await asyncio.wait((writer,), timeout=DROP_GRACE_S)
            for task in (reader, writer, drop):
                task.cancel()
            state.sockets.discard(conn)

    router.add("WS", "/ws", handle, kind=Kind.SOCKET)
    router.add("WS", "/ws/queues/:queue", handle, kind=Kind.SOCKET)

"""WebSocket: `/ws` and `/ws/queues/:queue`. Broadcasts engine events (filtered by queue
on the second path) and answers the commands in `COMMANDS` with `reqId` echoed. Jobs
pulled on a connection are owned by it and go back to waiting when it closes.

One reader and one writer per socket. The reader runs each command and queues its reply
in the socket's outbox (`events.Subscriber`), which the hub also fills with events; the
writer sends the outbox in order, a reply to a state change once its record is written.
Back-pressure (see `events.py`): the reader stops taking commands while a consumer that
reads is behind, and a socket that stops reading is dropped with a reason."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from hopper.errors import HopperError, InvalidInputError
from hopper.server.admission import Admission
from hopper.server.events import DROP_GRACE_S, CommitTarget, Subscriber, item_size
from hopper.server.http import Request, Socket
from hopper.server.operations import NO_JOB, JobOperations, check_poll_timeout
from hopper.server.router import Kind, Router
from hopper.server.state import ServerState

GOING_AWAY = 1001
POLICY_VIOLATION = 1008
TOO_SLOW = "event buffer overflow: client too slow"
# Messages handed to the socket at once: bounds what is in flight past the outbox and
# lets a consumer that reads show progress between chunks.
SEND_CHUNK = 128
# Long-poll PULLs waiting at once on one socket; more are refused, not queued.
MAX_PENDING_PULLS = 1000


def reply(req_id: Any, body: dict[str, Any]) -> bytes:
    if req_id is not None:
        body["reqId"] = req_id
    return orjson.dumps(body)


def splice(req_id: Any, body: bytes) -> bytes:
    """Adds `reqId` to a ready JSON object without parsing it again."""
    if req_id is None:
        return body
    return body[:-1] + b',"reqId":' + orjson.dumps(req_id) + b"}"


def string(msg: dict[str, Any], field: str) -> str:
    value = msg.get(field)
    if not isinstance(value, str) or not value:
        raise InvalidInputError(f"{field} is required (a string)")
    return value


class Connection:
    def __init__(
        self,
        state: ServerState,
        ops: JobOperations,
        admission: Admission,
        socket: Socket,
        sub: Subscriber,
    ) -> None:
        self.state = state
        self.ops = ops
        self.admission = admission
        self.socket = socket
        self.sub = sub
        self.owner = next(state.owner_ids)
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
        if self.sub.closed or self.sub.dropped:
            return  # the connection is ending: take no more work
        try:
            msg = orjson.loads(raw)
        except orjson.JSONDecodeError:
            self.sub.offer(reply(None, {"ok": False, "error": "Invalid JSON"}))
            return
        req_id = msg.get("reqId") if isinstance(msg, dict) else None
        cmd = msg.get("cmd") if isinstance(msg, dict) else None
        if not isinstance(cmd, str):
            self.sub.offer(
                reply(req_id, {"ok": False, "error": "Invalid command: cmd is required"})
            )
            return
        command = COMMANDS.get(cmd)
        if command is None:
            self.sub.offer(reply(req_id, {"ok": False, "error": f"Unknown command: {cmd}"}))
            return
        try:
            body = command.run(self, msg, raw)
        except HopperError as e:
            self.sub.offer(reply(req_id, {"ok": False, "error": str(e)}))
            return
        if body is None:
            return  # answered later (a long poll)
        target = self.state.engine.commit_target() if command.mutating else None
        self.sub.offer(splice(req_id, body), target)

    # ----- commands ------------------------------------------------------------------

    def pull(self, msg: dict[str, Any]) -> bytes | None:
        queue = string(msg, "queue")
        timeout = check_poll_timeout(msg.get("timeout", 0))
        if timeout and len(self.polls) >= MAX_PENDING_PULLS:
            raise InvalidInputError(
                f"Too many pending pulls on this socket (max {MAX_PENDING_PULLS})"
            )
        body = self.ops.pull(queue, self.owner)
        if body is not None or not timeout:
            return body or NO_JOB
        # Wait in a task so later commands on this socket are not held up.
        task = asyncio.create_task(self._long_pull(queue, timeout, msg.get("reqId")))
        self.polls.add(task)
        task.add_done_callback(self.polls.discard)
        return None

    async def _long_pull(self, queue: str, timeout_ms: int, req_id: Any) -> None:
        got = await self.ops.pull_wait(queue, timeout_ms, self.owner)
        self.sub.offer(splice(req_id, got or NO_JOB))

    def auth(self, msg: dict[str, Any]) -> bytes:
        token = msg.get("token")
        tokens = self.admission.tokens
        good = isinstance(token, str) and (not tokens.enabled or tokens.token_ok(token.encode()))
        return b'{"ok":true}' if good else b'{"ok":false,"error":"Invalid token"}'

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
        self.ops.release(self.owner)


def _last_target(batch: list[tuple[bytes, CommitTarget | None]]) -> CommitTarget | None:
    for _item, target in reversed(batch):
        if target is not None:
            return target
    return None


def _as_error(item: bytes, e: HopperError) -> bytes:
    """The reply of a command whose record could not be written (storage failed)."""
    req_id = orjson.loads(item).get("reqId")
    return reply(req_id, {"ok": False, "error": str(e)})


@dataclass(frozen=True, slots=True)
class Command:
    run: Callable[[Connection, dict[str, Any], bytes], bytes | None]
    mutating: bool = False  # answered once its record is written


COMMANDS: dict[str, Command] = {
    "PUSH": Command(lambda c, m, raw: c.ops.push(string(m, "queue"), raw), mutating=True),
    "PUSHB": Command(lambda c, m, raw: c.ops.push_many(string(m, "queue"), raw), mutating=True),
    "PULL": Command(lambda c, m, _raw: c.pull(m)),
    "ACK": Command(lambda c, m, raw: c.ops.ack(string(m, "id"), raw), mutating=True),
    "FAIL": Command(lambda c, m, raw: c.ops.fail(string(m, "id"), raw), mutating=True),
    "Auth": Command(lambda c, m, _raw: c.auth(m)),
}


def register(router: Router, state: ServerState, ops: JobOperations, admission: Admission) -> None:
    async def handle(req: Request, socket: Socket) -> None:
        sub = state.hub.subscribe(req.params.get("queue"))
        conn = Connection(state, ops, admission, socket, sub)
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

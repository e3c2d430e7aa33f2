"""WebSocket: `/ws` and `/ws/queues/:queue`. Broadcasts engine events (filtered by queue
on the second path) and answers commands PUSH, PUSHB (extension: many jobs), PULL, ACK,
FAIL, Auth with `reqId` echoed. Jobs pulled on a connection are owned by it and go back
to waiting when it closes."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import orjson

from hopper.errors import HopperError, InvalidInputError, InvalidStateError
from hopper.server.auth import TokenCheck
from hopper.server.events import Subscriber
from hopper.server.http import Message, Receive, Request, Scope, Send, error_body
from hopper.server.router import Router
from hopper.server.routes.jobs import MAX_POLL_MS, NOT_ACTIVE, pulled_body

if TYPE_CHECKING:
    from hopper.server.app import ServerState

GOING_AWAY = 1001
POLICY_VIOLATION = 1008
TRY_AGAIN_LATER = 1013


async def reject(
    scope: Scope,
    receive: Receive,
    send: Send,
    status: int,
    message: str,
    cors: list[tuple[bytes, bytes]],
) -> None:
    """Refuses an upgrade with an HTTP status and the `{ok:false}` body when the server
    supports the ASGI denial-response extension, else closes the handshake."""
    await receive()  # websocket.connect
    if "websocket.http.response" in scope.get("extensions", {}):
        body = error_body(message)
        await send(
            {
                "type": "websocket.http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    *cors,
                ],
            }
        )
        await send({"type": "websocket.http.response.body", "body": body})
    else:
        await send({"type": "websocket.close", "code": POLICY_VIOLATION})


def _reply(req_id: Any, body: dict[str, Any]) -> bytes:
    if req_id is not None:
        body["reqId"] = req_id
    return orjson.dumps(body)


def _splice(req_id: Any, body: bytes) -> bytes:
    """Adds `reqId` to a ready JSON object without parsing it again."""
    if req_id is None:
        return body
    return body[:-1] + b',"reqId":' + orjson.dumps(req_id) + b"}"


# Commands that change state: answered once their record is written (or synced).
MUTATING_COMMANDS = frozenset({"PUSH", "PUSHB", "ACK", "FAIL"})

# Long-poll PULLs waiting at once on one socket; more are refused, not queued.
MAX_PENDING_PULLS = 1000


class Connection:
    def __init__(self, state: ServerState, send: Send, tokens: TokenCheck, owner: int) -> None:
        self.state = state
        self.engine = state.engine
        self._send = send
        self._lock = asyncio.Lock()
        self.tokens = tokens
        self.owner = owner
        self.tasks: set[asyncio.Task[None]] = set()

    async def close_going_away(self) -> None:
        """Server shutdown: close with 1001; the receive loop then ends and cleans up."""
        async with self._lock:
            await self._send(
                {"type": "websocket.close", "code": GOING_AWAY, "reason": "server shutting down"}
            )

    async def send_text(self, text: bytes) -> None:
        async with self._lock:
            await self._send({"type": "websocket.send", "text": text.decode()})

    async def pump_events(self, sub: Subscriber) -> None:
        while True:
            batch = await sub.wait(30.0)
            if sub.closed:
                return
            if sub.overflowed:
                async with self._lock:
                    await self._send(
                        {
                            "type": "websocket.close",
                            "code": TRY_AGAIN_LATER,
                            "reason": "event buffer overflow: client too slow",
                        }
                    )
                return
            for event in batch:
                await self.send_text(event)

    async def command(self, raw: bytes) -> None:
        try:
            msg = orjson.loads(raw)
        except orjson.JSONDecodeError:
            await self.send_text(error_body("Invalid JSON"))
            return
        if not isinstance(msg, dict) or not isinstance(msg.get("cmd"), str):
            req_id = msg.get("reqId") if isinstance(msg, dict) else None
            await self.send_text(
                _reply(req_id, {"ok": False, "error": "Invalid command: cmd is required"})
            )
            return
        req_id = msg.get("reqId")
        cmd = msg["cmd"]
        try:
            reply = await self._run(cmd, msg, raw, req_id)
        except InvalidStateError as e:
            message = NOT_ACTIVE if str(e).startswith("Job not found") else str(e)
            reply = _reply(req_id, {"ok": False, "error": message})
        except HopperError as e:
            reply = _reply(req_id, {"ok": False, "error": str(e)})
        if reply is None:
            return
        target = self.engine.commit_target() if cmd in MUTATING_COMMANDS else None
        if target is not None:
            # Answer once the record is written, in a task: the commands after this one
            # go on meanwhile and share its write (group commit).
            task = asyncio.create_task(self._reply_when_committed(target, reply, req_id))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)
            return
        await self.send_text(reply)

    async def _reply_when_committed(
        self, target: tuple[int, int], reply: bytes, req_id: Any
    ) -> None:
        try:
            await self.engine.wait_committed(target)
        except HopperError as e:
            reply = _reply(req_id, {"ok": False, "error": str(e)})
        await self.send_text(reply)

    async def _run(self, cmd: str, msg: dict[str, Any], raw: bytes, req_id: Any) -> bytes | None:
        if cmd == "PUSH":
            job_id, _dup = self.engine.push_body(_string(msg, "queue"), raw)
            return _reply(req_id, {"ok": True, "id": job_id})
        if cmd == "PUSHB":
            ids = self.engine.push_many_body_json(_string(msg, "queue"), raw)
            return _splice(req_id, b'{"ok":true,"ids":' + ids + b"}")
        if cmd == "PULL":
            queue = _string(msg, "queue")
            timeout = msg.get("timeout", 0)
            if (
                not isinstance(timeout, int)
                or isinstance(timeout, bool)
                or not 0 <= timeout <= MAX_POLL_MS
            ):
                return _reply(
                    req_id,
                    {
                        "ok": False,
                        "error": f"timeout must be an integer between 0 and {MAX_POLL_MS} (ms)",
                    },
                )
            if timeout and len(self.tasks) >= MAX_PENDING_PULLS:
                return _reply(
                    req_id,
                    {
                        "ok": False,
                        "error": f"Too many pending pulls on this socket (max {MAX_PENDING_PULLS})",
                    },
                )
            got = self.engine.pull_json(queue, self.owner)
            if got is None and timeout:
                # Wait in a task so later commands on this socket are not held up.
                task = asyncio.create_task(self._long_pull(queue, timeout, req_id))
                self.tasks.add(task)
                task.add_done_callback(self.tasks.discard)
                return None
            return _splice(req_id, pulled_body(got))
        if cmd == "ACK":
            self.engine.ack_body(_string(msg, "id"), raw)
            return _reply(req_id, {"ok": True})
        if cmd == "FAIL":
            self.engine.fail_body(_string(msg, "id"), raw)
            return _reply(req_id, {"ok": True})
        if cmd == "Auth":
            token = msg.get("token")
            good = isinstance(token, str) and (
                not self.tokens.enabled or self.tokens.token_ok(token.encode())
            )
            return _reply(req_id, {"ok": True} if good else {"ok": False, "error": "Invalid token"})
        return _reply(req_id, {"ok": False, "error": f"Unknown command: {cmd}"})

    async def _long_pull(self, queue: str, timeout_ms: int, req_id: Any) -> None:
        got = await self.engine.pull_json_async(queue, timeout_ms / 1000, self.owner)
        await self.send_text(_splice(req_id, pulled_body(got)))


def _string(msg: dict[str, Any], field: str) -> str:
    value = msg.get(field)
    if not isinstance(value, str) or not value:
        raise InvalidInputError(f"{field} is required (a string)")
    return value


def register(router: Router, state: ServerState) -> None:
    async def handle(req: Request, send: Send, tokens: TokenCheck) -> None:
        first: Message = await req.receive()
        if first["type"] != "websocket.connect":
            return
        await send({"type": "websocket.accept"})
        conn = Connection(state, send, tokens, next(state.ws_ids))
        state.connections["ws"] += 1
        state.sockets.add(conn)
        sub = state.hub.subscribe(req.params.get("queue"))
        pump = asyncio.create_task(conn.pump_events(sub))
        try:
            while True:
                message = await req.receive()
                if message["type"] == "websocket.disconnect":
                    break
                text = message.get("text")
                raw = text.encode() if text is not None else message.get("bytes") or b""
                await conn.command(raw)
        except OSError:
            pass  # the peer vanished mid-send
        finally:
            state.hub.unsubscribe(sub)
            pump.cancel()
            for task in list(conn.tasks):
                task.cancel()
            state.engine.release_owner(conn.owner)
            state.sockets.discard(conn)
            state.connections["ws"] -= 1

    router.add("WS", "/ws", handle, rate_limited=True)
    router.add("WS", "/ws/queues/:queue", handle, rate_limited=True)

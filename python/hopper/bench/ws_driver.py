"""The WebSocket transport: `sockets` connections to `/ws`, each carrying the commands of
its lanes at once (lane i -> socket i % sockets), replies matched by `reqId`. Broadcast
events (messages without a `reqId`) are read and skipped."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import WebSocketException

from hopper.bench.transport import ConnectionLost, Pulled, RequestFailed, check_ok, pulled

REQ_ID_STR = '"reqId"'
REQ_ID_BYTES = b'"reqId"'


class _Socket:
    def __init__(self, ws: ClientConnection, timeout_s: float) -> None:
        self.ws = ws
        self.timeout_s = timeout_s
        self.next_id = 0
        self.pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self.events = 0
        self.closed: str | None = None
        self.reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        try:
            async for raw in self.ws:
                is_reply = REQ_ID_STR in raw if isinstance(raw, str) else REQ_ID_BYTES in raw
                if not is_reply:
                    self.events += 1  # a broadcast event: skipped unparsed
                    continue
                msg = orjson.loads(raw)
                rid = msg.get("reqId") if isinstance(msg, dict) else None
                if rid is None:
                    self.events += 1
                    continue
                fut = self.pending.pop(rid, None)
                if fut is not None and not fut.done():
                    fut.set_result(msg)
            self.closed = f"socket closed ({self.ws.close_code} {self.ws.close_reason})"
        except (WebSocketException, OSError, orjson.JSONDecodeError) as e:
            self.closed = f"socket failed: {type(e).__name__}: {e}"
        finally:
            self._fail_all(self.closed or "socket closed")

    def _fail_all(self, why: str) -> None:
        pending, self.pending = self.pending, {}
        for fut in pending.values():
            if not fut.done():
                fut.set_exception(ConnectionLost(why))

    def _expire(self, rid: int) -> None:
        fut = self.pending.pop(rid, None)
        if fut is not None and not fut.done():
            fut.set_exception(RequestFailed(f"no reply within {self.timeout_s:g} s"))

    async def call(self, cmd: dict[str, Any], extra_timeout_s: float = 0.0) -> dict[str, Any]:
        if self.closed:
            raise ConnectionLost(self.closed)
        self.next_id += 1
        rid = cmd["reqId"] = self.next_id
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[dict[str, Any]] = loop.create_future()
        self.pending[rid] = fut
        timer = loop.call_later(self.timeout_s + extra_timeout_s, self._expire, rid)
        try:
            await self.ws.send(orjson.dumps(cmd).decode())
            return check_ok(await fut)
        except (WebSocketException, OSError) as e:
            raise ConnectionLost(f"send failed: {type(e).__name__}: {e}") from e
        finally:
            timer.cancel()
            self.pending.pop(rid, None)

    async def close(self) -> None:
        with contextlib.suppress(WebSocketException, OSError):
            await self.ws.close()
        self.reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.reader


class WsTransport:
    name = "ws"

    def __init__(
        self,
        url: str,
        sockets: int = 1,
        token: str | None = None,
        timeout_s: float = 10.0,
        path: str = "/ws",
    ) -> None:
        base = url.rstrip("/")
        if base.startswith("http"):
            base = "ws" + base[4:]
        self.url = base + path
        self.n_sockets = max(1, sockets)
        self.token = token
        self.timeout_s = timeout_s
        self.sockets: list[_Socket] = []

    async def open(self, lanes: int) -> None:
        del lanes
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else None
        for _ in range(self.n_sockets):
            try:
                ws = await connect(
                    self.url,
                    additional_headers=headers,
                    compression=None,
                    max_size=None,
                    max_queue=None,
                    ping_interval=None,
                    open_timeout=self.timeout_s,
                )
            except (WebSocketException, OSError, TimeoutError) as e:
                await self.close()
                raise RuntimeError(f"cannot open {self.url}: {type(e).__name__}: {e}") from e
            self.sockets.append(_Socket(ws, self.timeout_s))

    async def close(self) -> None:
        for s in self.sockets:
            await s.close()
        self.sockets = []

    def events(self) -> int:
        return sum(s.events for s in self.sockets)

    def _sock(self, lane: int) -> _Socket:
        return self.sockets[lane % len(self.sockets)]

    async def command(self, cmd: dict[str, Any]) -> dict[str, Any]:
        """Any command of the table (`ListQueues`, `Obliterate`, ...) on the first socket;
        its reply, or RequestFailed when it says `ok: false`."""
        return await self._sock(0).call(dict(cmd))

    async def push(self, lane: int, queue: str, data: Any) -> str:
        body = await self._sock(lane).call({"cmd": "PUSH", "queue": queue, "data": data})
        return str(body.get("id"))

    async def pull(self, lane: int, queue: str, timeout_ms: int) -> Pulled | None:
        cmd: dict[str, Any] = {"cmd": "PULL", "queue": queue}
        if timeout_ms:
            cmd["timeout"] = timeout_ms
        return pulled(await self._sock(lane).call(cmd, timeout_ms / 1000))

    async def ack(self, lane: int, job: Pulled) -> None:
        cmd: dict[str, Any] = {"cmd": "ACK", "id": job.id}
        if job.token:
            cmd["token"] = job.token
        await self._sock(lane).call(cmd)

"""The WebSocket command channel (`/ws`, as bunqueue's) and the batching producer built on it.

`WsChannel` pipelines: any number of commands are in flight on one socket at once, each
with its own `reqId`, and each reply resolves the command whose `reqId` it echoes, in
whatever order replies come (a long-poll PULL answers after later PUSHes). When the
socket drops, every command in flight fails with `ConnectionLostError`; the next command
connects again.

`Producer` gathers pushes into batches of up to `batch_size` jobs per queue (a batch is
sent when full or `linger` seconds after its first job) and keeps up to `max_in_flight`
batches on the wire. A batch is one `PUSHB` command (hopper's extension) when the server
has it, else pipelined `PUSH` commands.
"""

from __future__ import annotations

import asyncio
import inspect
import itertools
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI

from hopper.client import _wire
from hopper.client.errors import (
    ClientError,
    ConnectionLostError,
    RequestTimeoutError,
    ServerError,
    error_for,
)
from hopper.job import Job

if TYPE_CHECKING:
    from typing_extensions import Unpack

log = logging.getLogger("hopper.client")

# The channel connects to the queue-filtered path of a queue no one uses, so the server
# sends it no events: on `/ws` every event of every queue would come back to a producer
# (one message per pushed job) and a busy socket would trip the server's slow-consumer
# limit. Pass `path="/ws"` (and `on_event`) to receive them.
COMMAND_PATH = "/ws/queues/" + quote("__hopper_command_channel__", safe="")
MAX_MESSAGE_BYTES = 256 * 1024 * 1024

_CONNECT_ARGS = inspect.signature(connect.__init__).parameters


def ws_url(url: str, path: str) -> str:
    """`http://host:port` (or `ws://…`) plus a path as a WebSocket URL."""
    base = url.rstrip("/")
    if base.startswith("http://"):
        base = "ws://" + base[len("http://") :]
    elif base.startswith("https://"):
        base = "wss://" + base[len("https://") :]
    return base + path


def _unsupported(e: ClientError) -> bool:
    text = e.message.lower()
    return "unknown command" in text or "invalid command" in text


@dataclass(eq=False)
class _Link:
    """One connection and the commands awaiting a reply on it."""

    conn: ClientConnection
    pending: dict[int, asyncio.Future[dict[str, Any]]] = field(default_factory=dict)
    reader: asyncio.Task[None] | None = None
    closed_reason: str | None = None


class WsChannel:
    """A pipelined WebSocket command channel.

    `url` is the server's base URL (http:// or ws://); `token` is sent as the
    handshake's bearer header and then with the `Auth` command; `timeout` bounds each
    command (a PULL's long-poll time is added) and the connection attempt; `on_event`
    receives event broadcasts when `path` subscribes to some (see COMMAND_PATH).
    """

    def __init__(
        self,
        url: str,
        *,
        token: str | None = None,
        timeout: float = 10.0,
        path: str = COMMAND_PATH,
        on_event: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        self.url = ws_url(url, path)
        self.token = token
        self.timeout = timeout
        self.on_event = on_event
        self._link: _Link | None = None
        self._lock = asyncio.Lock()
        self._ids = itertools.count(1)
        self._closed = False
        # None: not tried yet; False: the server answered PUSHB as an unknown command.
        self.pushb: bool | None = None
        self.connects = 0

    @property
    def connected(self) -> bool:
        return self._link is not None

    # ----- connection ----------------------------------------------------------------

    async def connect(self) -> None:
        """Connects now (commands connect on first use otherwise)."""
        await self._ensure()

    async def _ensure(self) -> _Link:
        link = self._link
        if link is not None:
            return link
        async with self._lock:
            if self._link is None:
                if self._closed:
                    raise ConnectionLostError("channel is closed")
                await self._open()
            assert self._link is not None
            return self._link

    async def _open(self) -> None:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else None
        kwargs: dict[str, Any] = {
            "additional_headers": headers,
            "open_timeout": self.timeout,
            "close_timeout": 2,
            "max_size": MAX_MESSAGE_BYTES,
            "compression": None,
            "max_queue": None,
        }
        if "proxy" in _CONNECT_ARGS:
            kwargs["proxy"] = None
        try:
            conn = await connect(self.url, **kwargs)
        except InvalidStatus as e:
            status = e.response.status_code
            message = f"WebSocket upgrade refused with HTTP {status}"
            try:
                body = orjson.loads(e.response.body or b"")
                if isinstance(body, dict) and isinstance(body.get("error"), str):
                    message = body["error"]
            except orjson.JSONDecodeError:
                pass
            raise error_for(status, message) from None
        except (OSError, asyncio.TimeoutError, InvalidHandshake, InvalidURI) as e:
            raise ConnectionLostError(f"cannot connect to {self.url}: {e}") from None
        link = _Link(conn)
        link.reader = asyncio.create_task(self._read(link))
        self._link = link
        self.connects += 1
        if self.token:
            try:
                await self._send(link, {"cmd": "Auth", "token": self.token}, 0.0)
            except ClientError:
                await self._drop(link)
                raise

    async def _read(self, link: _Link) -> None:
        reason = "connection closed"
        pending = link.pending
        on_event = self.on_event
        try:
            async for raw in link.conn:
                try:
                    msg = orjson.loads(raw)
                except orjson.JSONDecodeError:
                    continue
                if not isinstance(msg, dict):
                    continue
                req_id = msg.get("reqId")
                fut = pending.pop(req_id, None) if req_id is not None else None
                if fut is not None:
                    if not fut.done():
                        fut.set_result(msg)
                elif on_event is not None and "eventType" in msg:
                    try:
                        on_event(msg)
                    except Exception:
                        log.exception("on_event callback failed")
            code = link.conn.close_code
            if code is not None:
                reason = f"connection closed ({code} {link.conn.close_reason or ''})".strip()
        except ConnectionClosed as e:
            reason = f"connection lost ({e})"
        except Exception as e:  # the reader must always fail the pending commands
            reason = f"connection failed: {type(e).__name__}: {e}"
        finally:
            link.closed_reason = reason
            if self._link is link:
                self._link = None
            error = f"WebSocket {reason} before the reply"
            for fut in pending.values():
                if not fut.done():
                    fut.set_exception(ConnectionLostError(error))
                    fut.exception()  # retrieved: the awaiting command re-raises it
            pending.clear()

    async def _drop(self, link: _Link) -> None:
        if self._link is link:
            self._link = None
        await link.conn.close()
        if link.reader is not None:
            await asyncio.gather(link.reader, return_exceptions=True)

    async def close(self) -> None:
        """Closes the socket (the server releases every job pulled on it); commands in
        flight fail with ConnectionLostError. Later commands raise."""
        self._closed = True
        link = self._link
        if link is not None:
            await self._drop(link)

    async def __aenter__(self) -> WsChannel:
        await self.connect()
        return self

    async def __aexit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    # ----- commands ------------------------------------------------------------------

    async def _send(self, link: _Link, msg: dict[str, Any], extra: float) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        req_id = next(self._ids)
        msg["reqId"] = req_id
        text = _wire.dumps(msg).decode()
        fut: asyncio.Future[dict[str, Any]] = loop.create_future()
        link.pending[req_id] = fut
        try:
            await link.conn.send(text)
        except ConnectionClosed as e:
            link.pending.pop(req_id, None)
            raise ConnectionLostError(f"WebSocket closed before sending ({e})") from None
        handle = loop.call_later(self.timeout + extra, self._expire, link, req_id, msg["cmd"])
        try:
            reply = await fut
        finally:
            handle.cancel()
        return _wire.check(reply, None)

    def _expire(self, link: _Link, req_id: int, cmd: str) -> None:
        fut = link.pending.pop(req_id, None)
        if fut is not None and not fut.done():
            fut.set_exception(RequestTimeoutError(f"{cmd}: no reply within the timeout"))

    async def call(self, cmd: str, _extra_timeout: float = 0.0, **fields: Any) -> dict[str, Any]:
        """Sends any command (`{"cmd": cmd, **fields}`) and returns its `ok` reply."""
        link = await self._ensure()
        return await self._send(link, {"cmd": cmd, **fields}, _extra_timeout)

    async def push(self, queue: str, data: Any, **options: Unpack[_wire.PushOptions]) -> str:
        """PUSH one job; returns its id. Options as `Client.push`."""
        body = _wire.push_body(data, options)
        return str((await self.call("PUSH", queue=queue, **body))["id"])

    async def push_many(self, queue: str, jobs: Iterable[Mapping[str, Any]]) -> list[str]:
        """Pushes many jobs (mappings with `data` and options): one PUSHB, all or none,
        when the server has it, else one pipelined PUSH per job (ids in order)."""
        return await self.push_bodies(queue, _wire.job_bodies(jobs))

    async def push_bodies(self, queue: str, bodies: list[dict[str, Any]]) -> list[str]:
        """`push_many` for bodies already in the wire's camelCase."""
        if self.pushb is not False:
            try:
                reply = await self.call("PUSHB", queue=queue, jobs=bodies)
            except ClientError as e:
                if self.pushb or not _unsupported(e):
                    raise
                self.pushb = False
            else:
                self.pushb = True
                return [str(i) for i in reply["ids"]]
        link = await self._ensure()
        replies = await asyncio.gather(
            *(self._send(link, {"cmd": "PUSH", "queue": queue, **b}, 0.0) for b in bodies)
        )
        return [str(r["id"]) for r in replies]

    async def pull(self, queue: str, *, timeout: float = 0) -> Job | None:
        """PULL with a long-poll of up to `timeout` seconds. The job is owned by this
        socket: if it closes before the ack, the server puts the job back to waiting."""
        ms = _wire.poll_ms(timeout)
        # A lock owner makes the reply carry the lock token (bunqueue's PULL).
        reply = await self.call("PULL", timeout, queue=queue, timeout=ms, owner="hopper-client")
        return _wire.job_from(reply)

    async def ack(self, job_id: str, token: str | None = None, result: Any = None) -> None:
        await self.call("ACK", id=job_id, **_wire.ack_body(token, result))

    async def fail(
        self,
        job_id: str,
        token: str | None = None,
        error: str | None = None,
        stack: Sequence[str] | None = None,
    ) -> None:
        """The `FAIL` command; `stack` is its optional list of stack lines (hopper's
        server accepts it and keeps the error only)."""
        await self.call("FAIL", id=job_id, **_wire.fail_body(token, error, stack))

    async def auth(self, token: str) -> None:
        """The `Auth` command (sent by itself on connect when the channel has a token)."""
        await self.call("Auth", token=token)


class Producer:
    """Batches and pipelines pushes on one WebSocket channel.

        async with client.producer("emails") as producer:
            for i in range(100_000):
                await producer.push({"n": i})   # returns a future of the job's id
            ids = await producer.push_many([{"data": i} for i in range(1000)])

    `push` awaits only when `max_pending` jobs are unconfirmed (backpressure) and
    returns an `asyncio.Future` of the id. A failed batch sets its error on each of its
    jobs' futures and is raised again by the next `flush()` or `close()`.
    """

    def __init__(
        self,
        channel: WsChannel,
        queue: str | None = None,
        *,
        batch_size: int = 1000,
        linger: float = 0.002,
        max_in_flight: int = 8,
        max_pending: int | None = None,
        own_channel: bool = False,
    ) -> None:
        if batch_size < 1 or max_in_flight < 1:
            raise ValueError("batch_size and max_in_flight must be at least 1")
        self.channel = channel
        self.queue = queue
        self.batch_size = batch_size
        self.linger = linger
        self.max_pending = max_pending or batch_size * max_in_flight * 2
        self._own = own_channel
        self._slots = asyncio.Semaphore(max_in_flight)
        self._buffers: dict[str, list[tuple[dict[str, Any], asyncio.Future[str]]]] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._unsettled = 0
        self._room = asyncio.Event()
        self._error: BaseException | None = None
        self._closed = False
        self.pushed = 0

    def _queue(self, queue: str | None) -> str:
        q = queue or self.queue
        if not q:
            raise ValueError("no queue: pass queue= or give the producer one")
        if self._closed:
            raise ConnectionLostError("producer is closed")
        return q

    async def push(
        self, data: Any, *, queue: str | None = None, **options: Unpack[_wire.PushOptions]
    ) -> asyncio.Future[str]:
        """Adds a job to the current batch; returns a future of its id."""
        q = self._queue(queue)
        fut: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        buf = self._buffers.get(q)
        if buf is None:
            buf = self._buffers[q] = []
        buf.append((_wire.push_body(data, options), fut))
        self._unsettled += 1
        if len(buf) >= self.batch_size:
            self._send(q)
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self.linger, self._send_all)
        if self._unsettled >= self.max_pending:
            await self._wait_room()
        return fut

    async def push_many(
        self, jobs: Iterable[Mapping[str, Any]], *, queue: str | None = None
    ) -> list[str]:
        """Pushes many jobs (mappings with `data` and options) in batches of
        `batch_size`, up to `max_in_flight` at once; returns the ids in order. Each
        batch is all or none; on an error, earlier batches may have been added."""
        q = self._queue(queue)
        bodies = _wire.job_bodies(jobs)
        size = self.batch_size
        loop = asyncio.get_running_loop()
        futures: list[asyncio.Future[list[str]]] = []
        for start in range(0, len(bodies), size):
            chunk = bodies[start : start + size]
            fut: asyncio.Future[list[str]] = loop.create_future()
            futures.append(fut)
            self._unsettled += len(chunk)
            self._spawn(self._send_chunk(q, chunk, fut))
            if self._unsettled >= self.max_pending:
                await self._wait_room()
        ids: list[str] = []
        for got in await asyncio.gather(*futures, return_exceptions=True):
            if isinstance(got, BaseException):
                raise got
            ids.extend(got)
        return ids

    async def flush(self) -> None:
        """Sends every buffered job and waits for all batches; raises the first batch
        error since the last flush."""
        self._send_all()
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
        error, self._error = self._error, None
        if error is not None:
            raise error

    async def close(self) -> None:
        """Flushes, then closes the channel if the producer opened it."""
        try:
            await self.flush()
        finally:
            self._closed = True
            if self._own:
                await self.channel.close()

    async def __aenter__(self) -> Producer:
        await self.channel.connect()
        return self

    async def __aexit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        if e is None:
            await self.close()
        else:
            self._closed = True
            if self._own:
                await self.channel.close()

    # ----- plumbing ------------------------------------------------------------------

    async def _wait_room(self) -> None:
        while self._unsettled >= self.max_pending:
            self._room.clear()
            await self._room.wait()

    def _spawn(self, coro: Any) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _send_all(self) -> None:
        self._timer = None
        for q in list(self._buffers):
            self._send(q)

    def _send(self, queue: str) -> None:
        batch = self._buffers.pop(queue, None)
        if not self._buffers and self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if batch:
            self._spawn(self._send_batch(queue, batch))

    async def _send_batch(
        self, queue: str, batch: list[tuple[dict[str, Any], asyncio.Future[str]]]
    ) -> None:
        try:
            async with self._slots:
                ids = await self.channel.push_bodies(queue, [body for body, _ in batch])
            if len(ids) != len(batch):
                raise ServerError(f"{len(ids)} ids for a batch of {len(batch)} jobs")
        except Exception as e:
            self._record(e)
            for _, fut in batch:
                if not fut.done():
                    fut.set_exception(e)
                    fut.exception()  # retrieved here; flush() raises it once
        else:
            self.pushed += len(ids)
            for (_, fut), job_id in zip(batch, ids, strict=True):
                if not fut.done():
                    fut.set_result(job_id)
        finally:
            self._settled(len(batch))

    async def _send_chunk(
        self, queue: str, chunk: list[dict[str, Any]], fut: asyncio.Future[list[str]]
    ) -> None:
        try:
            async with self._slots:
                ids = await self.channel.push_bodies(queue, chunk)
        except Exception as e:
            fut.set_exception(e)
        else:
            self.pushed += len(ids)
            fut.set_result(ids)
        finally:
            self._settled(len(chunk))

    def _record(self, error: BaseException) -> None:
        if self._error is None:
            self._error = error

    def _settled(self, n: int) -> None:
        self._unsettled -= n
        if self._unsettled < self.max_pending:
            self._room.set()

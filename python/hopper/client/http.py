"""`hopper.Client` and `hopper.AsyncClient`: the job server's HTTP API (bunqueue's) with
httpx, plus hopper's bulk push when the server has it.

Every call returns the answer's payload or raises a `hopper.client.errors` error with
the server's message. `timeout` (seconds) bounds each request; a pull's long-poll time
is added to it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any, Generic, TypeVar
from urllib.parse import quote

import httpx

from hopper.client import _wire
from hopper.client.errors import (
    ClientError,
    ConnectionLostError,
    JobNotFoundError,
    RequestTimeoutError,
    ServerError,
)
from hopper.client.sse import AsyncEventStream, EventStream
from hopper.job import Job

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from hopper.client.ws import Producer, WsChannel

T = TypeVar("T")
DEFAULT_URL = "http://127.0.0.1:6790"
_JSON = {"content-type": "application/json"}


def _q(part: str) -> str:
    return quote(part, safe="")


def _transport_error(method: str, path: str, e: httpx.HTTPError) -> ClientError:
    if isinstance(e, httpx.TimeoutException):
        return RequestTimeoutError(f"{method} {path}: no answer in time ({type(e).__name__})")
    return ConnectionLostError(f"{method} {path}: {type(e).__name__}: {e}")


def _bulk_missing(e: ClientError) -> bool:
    """A server without the bulk extension answers its path with 404 or 405."""
    return isinstance(e, JobNotFoundError) or (isinstance(e, ServerError) and e.status == 405)


@dataclass(frozen=True)
class _Call(Generic[T]):
    """One request of the API and how to read its answer, written once for both clients
    (each only does the I/O: `Client._run` blocking, `AsyncClient._run` awaited)."""

    method: str
    path: str
    finish: Callable[[dict[str, Any]], T]
    body: Any = None
    params: dict[str, Any] | None = None
    extra: float = 0.0  # seconds added to the timeout (a long poll's wait)


def _nothing(_: dict[str, Any]) -> None:
    return None


def _push(queue: str, data: Any, options: Mapping[str, Any]) -> _Call[str]:
    return _push_body(queue, _wire.push_body(data, options))


def _push_body(queue: str, body: dict[str, Any]) -> _Call[str]:
    return _Call("POST", f"/queues/{_q(queue)}/jobs", lambda a: str(a["id"]), body)


def _bulk(queue: str, bodies: list[dict[str, Any]]) -> _Call[list[str]]:
    return _Call(
        "POST",
        f"/queues/{_q(queue)}/jobs/bulk",
        lambda a: [str(i) for i in a["ids"]],
        {"jobs": bodies},
    )


def _pull(queue: str, timeout: float) -> _Call[Job | None]:
    ms = _wire.poll_ms(timeout)
    params = {"timeout": ms} if ms else None
    return _Call("GET", f"/queues/{_q(queue)}/jobs", _wire.job_from, None, params, timeout)


def _ack(job_id: str, token: str | None, result: Any) -> _Call[None]:
    return _Call("POST", f"/jobs/{_q(job_id)}/ack", _nothing, _wire.ack_body(token, result))


def _fail(
    job_id: str, token: str | None, error: str | None, stack: Sequence[str] | None
) -> _Call[None]:
    body = _wire.fail_body(token, error, stack)
    return _Call("POST", f"/jobs/{_q(job_id)}/fail", _nothing, body)


def _get(job_id: str) -> _Call[dict[str, Any]]:
    return _Call("GET", f"/jobs/{_q(job_id)}", lambda a: dict(a["job"]))


def _cancel(job_id: str) -> _Call[None]:
    return _Call("DELETE", f"/jobs/{_q(job_id)}", _nothing)


def _health() -> _Call[dict[str, Any]]:
    return _Call("GET", "/health", lambda a: a)


class _Settings:
    """What both clients share: base URL, auth header, timeouts, bulk support."""

    def __init__(self, url: str, token: str | None, timeout: float, events_timeout: float):
        if not timeout > 0:
            raise ValueError("timeout must be a positive number of seconds")
        self.url = url.rstrip("/")
        self.token = token
        self.timeout = timeout
        self.events_timeout = events_timeout
        self.headers = {"authorization": f"Bearer {token}"} if token else {}
        # None: not tried yet; False: the server lacks POST /queues/:q/jobs/bulk.
        self.bulk: bool | None = None

    def http_options(self, max_connections: int) -> dict[str, Any]:
        """The httpx client arguments both clients build their pool with."""
        return {
            "base_url": self.url,
            "headers": self.headers,
            "timeout": self.timeout,
            "limits": httpx.Limits(
                max_connections=max_connections, max_keepalive_connections=max_connections
            ),
        }

    def request(self, call: _Call[Any]) -> dict[str, Any]:
        """httpx `request` arguments for `call`."""
        content = None if call.body is None else _wire.dumps(call.body)
        return {
            "method": call.method,
            "url": call.path,
            "content": content,
            "params": call.params,
            "headers": _JSON if content is not None else None,
            "timeout": self.timeout + call.extra,
        }

    def stream_timeout(self) -> httpx.Timeout:
        return httpx.Timeout(self.timeout, read=self.events_timeout)

    @staticmethod
    def events_path(queue: str | None) -> str:
        return "/events" if queue is None else f"/events/queues/{_q(queue)}"


class Client:
    """The job server over HTTP, blocking.

    `url` is the server's base URL; `token` a bearer token (servers run with
    `AUTH_TOKENS`); `timeout` bounds each request in seconds (a pull's long-poll time is
    added); `events_timeout` is the longest silence tolerated on an event stream.
    """

    def __init__(
        self,
        url: str = DEFAULT_URL,
        *,
        token: str | None = None,
        timeout: float = 10.0,
        events_timeout: float = 60.0,
        max_connections: int = 100,
    ) -> None:
        self._s = _Settings(url, token, timeout, events_timeout)
        self._http = httpx.Client(**self._s.http_options(max_connections))

    @property
    def url(self) -> str:
        return self._s.url

    @property
    def token(self) -> str | None:
        return self._s.token

    @property
    def timeout(self) -> float:
        return self._s.timeout

    def _run(self, call: _Call[T]) -> T:
        try:
            resp = self._http.request(**self._s.request(call))
        except httpx.HTTPError as e:
            raise _transport_error(call.method, call.path, e) from None
        return call.finish(_wire.decode(resp.content, resp.status_code))

    # ----- producing -----------------------------------------------------------------

    def push(self, queue: str, data: Any, **options: Unpack[_wire.PushOptions]) -> str:
        """Adds a job and returns its id (`POST /queues/:queue/jobs`). Options are the
        push body's fields in snake_case: priority, delay, max_attempts, backoff, ttl,
        timeout, unique_key, job_id, tags, group_id, lifo, remove_on_complete,
        remove_on_fail, durable, depends_on, repeat (and name)."""
        return self._run(_push(queue, data, options))

    def push_many(self, queue: str, jobs: Iterable[Mapping[str, Any]]) -> list[str]:
        """Adds many jobs, each a mapping with `data` and push options (snake_case or
        camelCase). One bulk request, all or none, when the server has the extension;
        else one push per job, in order."""
        bodies = _wire.job_bodies(jobs)
        if self._s.bulk is not False:
            try:
                ids = self._run(_bulk(queue, bodies))
                self._s.bulk = True
                return ids
            except ClientError as e:
                if self._s.bulk or not _bulk_missing(e):
                    raise
                self._s.bulk = False
        return [self._run(_push_body(queue, b)) for b in bodies]

    # ----- consuming -----------------------------------------------------------------

    def pull(self, queue: str, *, timeout: float = 0) -> Job | None:
        """Leases the next job, waiting up to `timeout` seconds (long poll, at most 60)
        for one; None when none came."""
        return self._run(_pull(queue, timeout))

    def ack(self, job_id: str, token: str | None = None, result: Any = None) -> None:
        """Completes a leased job with an optional JSON result. Pass the pull's `token`
        so a lease that was lost (stalled, re-leased) is refused (LockTokenError)."""
        self._run(_ack(job_id, token, result))

    def fail(
        self,
        job_id: str,
        token: str | None = None,
        error: str | None = None,
        stack: Sequence[str] | None = None,
    ) -> None:
        """Fails the current attempt; the server retries it after its backoff while
        attempts remain (maxAttempts), else the job fails for good. `stack`: the
        reference's optional list of stack lines, sent in the body (hopper's server
        accepts it and keeps the error only)."""
        self._run(_fail(job_id, token, error, stack))

    # ----- single jobs and events --------------------------------------------------

    def get(self, job_id: str) -> dict[str, Any]:
        """The job's JSON object (with `state`); JobNotFoundError when unknown."""
        return self._run(_get(job_id))

    def cancel(self, job_id: str) -> None:
        """Cancels a job that has not started (`DELETE /jobs/:id`)."""
        self._run(_cancel(job_id))

    def health(self) -> dict[str, Any]:
        """`GET /health` (no auth needed)."""
        return self._run(_health())

    def events(self, queue: str | None = None) -> EventStream:
        """The SSE stream of every queue (or one) as dicts: `for ev in client.events()`,
        or `with client.events("q") as events: ...` to close it deterministically."""
        return EventStream(
            self._http, self._s.events_path(queue), self._s.headers, self._s.stream_timeout()
        )

    # ----- lifecycle -----------------------------------------------------------------

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class AsyncClient:
    """The job server over HTTP for asyncio (same calls as `Client`, awaited), and the
    WebSocket command channel: `channel()` and the batching `producer()`."""

    def __init__(
        self,
        url: str = DEFAULT_URL,
        *,
        token: str | None = None,
        timeout: float = 10.0,
        events_timeout: float = 60.0,
        max_connections: int = 100,
    ) -> None:
        self._s = _Settings(url, token, timeout, events_timeout)
        self._http = httpx.AsyncClient(**self._s.http_options(max_connections))

    @classmethod
    def like(cls, client: Client, *, max_connections: int = 100) -> AsyncClient:
        """An AsyncClient with a sync Client's URL, token and timeouts."""
        s = client._s
        return cls(
            s.url,
            token=s.token,
            timeout=s.timeout,
            events_timeout=s.events_timeout,
            max_connections=max_connections,
        )

    @property
    def url(self) -> str:
        return self._s.url

    @property
    def token(self) -> str | None:
        return self._s.token

    @property
    def timeout(self) -> float:
        return self._s.timeout

    async def _run(self, call: _Call[T]) -> T:
        try:
            resp = await self._http.request(**self._s.request(call))
        except httpx.HTTPError as e:
            raise _transport_error(call.method, call.path, e) from None
        return call.finish(_wire.decode(resp.content, resp.status_code))

    async def push(self, queue: str, data: Any, **options: Unpack[_wire.PushOptions]) -> str:
        """See `Client.push`."""
        return await self._run(_push(queue, data, options))

    async def push_many(self, queue: str, jobs: Iterable[Mapping[str, Any]]) -> list[str]:
        """See `Client.push_many` (without the bulk extension the pushes run
        concurrently; ids come back in order)."""
        bodies = _wire.job_bodies(jobs)
        if self._s.bulk is not False:
            try:
                ids = await self._run(_bulk(queue, bodies))
                self._s.bulk = True
                return ids
            except ClientError as e:
                if self._s.bulk or not _bulk_missing(e):
                    raise
                self._s.bulk = False
        return list(await asyncio.gather(*(self._run(_push_body(queue, b)) for b in bodies)))

    async def pull(self, queue: str, *, timeout: float = 0) -> Job | None:
        """See `Client.pull`."""
        return await self._run(_pull(queue, timeout))

    async def ack(self, job_id: str, token: str | None = None, result: Any = None) -> None:
        await self._run(_ack(job_id, token, result))

    async def fail(
        self,
        job_id: str,
        token: str | None = None,
        error: str | None = None,
        stack: Sequence[str] | None = None,
    ) -> None:
        await self._run(_fail(job_id, token, error, stack))

    async def get(self, job_id: str) -> dict[str, Any]:
        return await self._run(_get(job_id))

    async def cancel(self, job_id: str) -> None:
        await self._run(_cancel(job_id))

    async def health(self) -> dict[str, Any]:
        return await self._run(_health())

    def events(self, queue: str | None = None) -> AsyncEventStream:
        """`async with client.events() as events: async for ev in events: ...`"""
        return AsyncEventStream(
            self._http, self._s.events_path(queue), self._s.headers, self._s.stream_timeout()
        )

    # ----- WebSocket -----------------------------------------------------------------

    def channel(self, **kwargs: Any) -> WsChannel:
        """A new WebSocket command channel to this server (connects on first use); see
        `hopper.client.ws.WsChannel` for the keyword arguments."""
        from hopper.client.ws import WsChannel

        kwargs.setdefault("token", self._s.token)
        kwargs.setdefault("timeout", self._s.timeout)
        return WsChannel(self._s.url, **kwargs)

    def producer(self, queue: str | None = None, **kwargs: Any) -> Producer:
        """A batching, pipelining producer on a new WebSocket channel (closed with the
        producer); see `hopper.client.ws.Producer` for the keyword arguments."""
        from hopper.client.ws import Producer

        return Producer(self.channel(), queue, own_channel=True, **kwargs)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

"""`hopper.Worker`: runs a handler on the jobs of one queue, from a job server
(`hopper.Client` / `hopper.AsyncClient`, over HTTP or the WebSocket channel) or from an
in-process `hopper.Engine`, with the same API.

    def send_email(job: hopper.ActiveJob) -> dict:
        job.progress(50)                  # embedded engine only (see ActiveJob.progress)
        return {"sent": True}             # the ack's result

    hopper.Worker(hopper.Client("http://127.0.0.1:6790"), "emails", send_email,
                  concurrency=8).run()     # blocks until SIGTERM/SIGINT or stop()

The handler gets an `ActiveJob` and may be sync (run on a thread of the worker's own,
`concurrency` threads) or async (run on the worker's event loop). Its return value is the
ack's result; an exception is logged with its traceback (logger "hopper.worker") and
fails the attempt with the error "Type: message" and a short stack (the last
`STACK_LINES` frames), and the server retries it per the job's maxAttempts/backoff.

Shutdown (SIGTERM, SIGINT, or `stop()`): the worker stops pulling at once, waits up to
`grace` seconds for the jobs in flight to finish and be acked, then releases the jobs
still running, so none is lost:

- embedded `Engine`: the worker pulls under its own owner id and returns its unfinished
  jobs to waiting (`Engine.release_owner`): no attempt is used;
- `transport="ws"`: jobs pulled on a WebSocket are owned by it; the worker closes it and
  the server returns them to waiting: no attempt is used;
- HTTP (the default): bunqueue's HTTP API has no release, so each unfinished job is
  failed with the error "interrupted by shutdown" and the server retries it after its
  backoff — unless that attempt was its last (failing it would dead-letter it): such a
  job is left active for the server's stall detection, which returns it to waiting
  after `--stall-interval-ms` (30 s by default).

A second signal during the grace period releases at once. A sync handler still running
at release cannot be interrupted: its thread is a daemon thread, its late result is
dropped (the job was released), and it does not hold up process exit.

Leases: on an embedded Engine the worker renews the lease of every running job (a
heartbeat every third of the stall interval, or `heartbeat` seconds) and
`ActiveJob.progress()` records progress. Seed 001's HTTP and WebSocket APIs have neither
a lease-renewal nor a progress route, so over a server `progress()` returns False and a
job's handler must finish within the server's stall interval (`--stall-interval-ms`), or
it is stalled and handed out again.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import inspect
import itertools
import logging
import queue as _queue
import signal
import threading
import traceback
from collections.abc import Callable, Sequence
from typing import Any, Literal

from hopper.client.errors import AuthError
from hopper.client.http import AsyncClient, Client
from hopper.client.ws import WsChannel
from hopper.engine import Engine
from hopper.errors import (
    HopperError,
    InvalidInputError,
    InvalidStateError,
    LockError,
    UnavailableError,
)
from hopper.job import Job

log = logging.getLogger("hopper.worker")

SHUTDOWN_ERROR = "interrupted by shutdown"
# The reference's `stack` of a failed attempt: up to 10 lines.
STACK_LINES = 10
Source = Client | AsyncClient | Engine
Handler = Callable[["ActiveJob"], Any]

# Owner ids for embedded pulls, far above the servers' connection ids (which count from 1).
_OWNERS = itertools.count(1 << 62)


class ActiveJob:
    """A job the handler is working on: the pulled `Job`'s fields, plus progress and
    lease renewal where the source supports them."""

    __slots__ = ("_backend", "_worker", "job", "released")

    def __init__(self, job: Job, backend: _Backend, worker: Worker) -> None:
        self.job = job
        self._backend = backend
        self._worker = worker
        self.released = False

    @property
    def id(self) -> str:
        return self.job.id

    @property
    def queue(self) -> str:
        return self.job.queue

    @property
    def name(self) -> str:
        return self.job.name

    @property
    def data(self) -> Any:
        return self.job.data

    @property
    def token(self) -> str:
        return self.job.token

    @property
    def priority(self) -> int:
        return self.job.priority

    @property
    def attempts(self) -> int:
        """Attempts that failed before this one."""
        return self.job.attempts

    @property
    def max_attempts(self) -> int:
        return self.job.max_attempts

    @property
    def created_at(self) -> int:
        return self.job.created_at

    @property
    def stopping(self) -> bool:
        """True once the worker is shutting down: a long handler may wrap up early."""
        return self._worker.stopping

    def progress(self, value: int) -> bool:
        """Reports progress (0..100). True when the source recorded it (embedded Engine);
        False over a server, whose HTTP API (bunqueue's) has no progress route."""
        if self.released:
            return False
        return self._backend.progress(self.job, value)

    def extend_lease(self, duration_ms: int | None = None) -> bool:
        """Renews the lease now (the worker also does it on its own). True when the
        source supports it (embedded Engine)."""
        if self.released:
            return False
        return self._backend.extend(self.job, duration_ms) is not None

    def __repr__(self) -> str:
        return f"ActiveJob(id={self.id!r}, queue={self.queue!r}, attempts={self.attempts})"


def error_text(exc: BaseException) -> str:
    """A failed attempt's error: `KeyError: 'x'`, or the type alone without a message."""
    message = str(exc)
    name = type(exc).__name__
    return f"{name}: {message}" if message else name


def error_stack(exc: BaseException, limit: int = STACK_LINES) -> list[str]:
    """The innermost `limit` frames of the exception's traceback, one line each, the
    frame that raised last: `File "app.py", line 12, in handler`."""
    frames = traceback.extract_tb(exc.__traceback__)[-limit:] if limit > 0 else []
    return [f'File "{f.filename}", line {f.lineno}, in {f.name}' for f in frames]


# ----- sources -----------------------------------------------------------------------


class _Backend:
    """What the worker needs from a source."""

    can_extend = False

    async def open(self) -> None:
        return None

    async def pull(self, queue: str, timeout: float) -> Job | None:
        raise NotImplementedError

    async def ack(self, job: Job, result: Any) -> None:
        raise NotImplementedError

    async def fail(self, job: Job, error: str, stack: Sequence[str] | None = None) -> None:
        raise NotImplementedError

    def progress(self, job: Job, value: int) -> bool:
        return False

    def extend(self, job: Job, duration_ms: int | None = None) -> int | None:
        """Renews the lease; the ms until it would stall, or None if unsupported."""
        return None

    async def release(self, jobs: list[Job]) -> None:
        raise NotImplementedError

    async def close(self) -> None:
        return None


class _EngineBackend(_Backend):
    can_extend = True

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.owner = next(_OWNERS)

    async def pull(self, queue: str, timeout: float) -> Job | None:
        return await self.engine.pull_async(queue, timeout=timeout, owner=self.owner)

    async def ack(self, job: Job, result: Any) -> None:
        self.engine.ack(job.id, job.token, result)

    async def fail(self, job: Job, error: str, stack: Sequence[str] | None = None) -> None:
        self.engine.fail(job.id, job.token, error)  # the engine keeps the error only

    def progress(self, job: Job, value: int) -> bool:
        self.engine.progress(job.id, value, job.token)
        return True

    def extend(self, job: Job, duration_ms: int | None = None) -> int | None:
        deadline = self.engine.extend_lease(job.id, job.token, duration_ms)
        return max(0, deadline - self.engine.now_ms())

    async def release(self, jobs: list[Job]) -> None:
        self.engine.release_owner(self.owner)

    async def close(self) -> None:
        # Anything still leased under this worker's owner (a pull that completed as it
        # was cancelled) goes back to waiting.
        self.engine.release_owner(self.owner)


class _HttpBackend(_Backend):
    def __init__(self, client: AsyncClient, owned: bool) -> None:
        self.client = client
        self.owned = owned

    async def pull(self, queue: str, timeout: float) -> Job | None:
        return await self.client.pull(queue, timeout=timeout)

    async def ack(self, job: Job, result: Any) -> None:
        await self.client.ack(job.id, job.token, result)

    async def fail(self, job: Job, error: str, stack: Sequence[str] | None = None) -> None:
        await self.client.fail(job.id, job.token, error, stack)

    async def release(self, jobs: list[Job]) -> None:
        async def one(job: Job) -> None:
            if job.attempts + 1 >= job.max_attempts:
                log.warning(
                    "job %s was on its last attempt: left to the server's stall detection",
                    job.id,
                )
                return
            try:
                await self.client.fail(job.id, job.token, SHUTDOWN_ERROR)
            except HopperError as e:
                log.warning("could not release job %s (%s): stall detection will", job.id, e)

        await asyncio.gather(*(one(j) for j in jobs))

    async def close(self) -> None:
        if self.owned:
            await self.client.aclose()


class _WsBackend(_Backend):
    def __init__(self, channel: WsChannel, client: AsyncClient | None) -> None:
        self.channel = channel
        self.client = client  # an AsyncClient made for a sync Client, closed with us

    async def open(self) -> None:
        await self.channel.connect()

    async def pull(self, queue: str, timeout: float) -> Job | None:
        return await self.channel.pull(queue, timeout=timeout)

    async def ack(self, job: Job, result: Any) -> None:
        await self.channel.ack(job.id, job.token, result)

    async def fail(self, job: Job, error: str, stack: Sequence[str] | None = None) -> None:
        await self.channel.fail(job.id, job.token, error, stack)

    async def release(self, jobs: list[Job]) -> None:
        await self.channel.close()  # the server returns the socket's jobs to waiting

    async def close(self) -> None:
        await self.channel.close()
        if self.client is not None:
            await self.client.aclose()


# ----- threads for sync handlers -----------------------------------------------------


class _Threads:
    """A fixed set of daemon threads: a sync handler stuck past shutdown must not keep
    the process alive (ThreadPoolExecutor's threads are joined at exit)."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._work: _queue.SimpleQueue[
            tuple[Callable[[Any], Any], Any, concurrent.futures.Future[Any]] | None
        ] = _queue.SimpleQueue()
        self._threads: list[threading.Thread] = []

    def run(self, fn: Callable[[Any], Any], arg: Any) -> asyncio.Future[Any]:
        if not self._threads:
            for i in range(self._size):
                t = threading.Thread(target=self._loop, name=f"hopper-worker-{i}", daemon=True)
                t.start()
                self._threads.append(t)
        fut: concurrent.futures.Future[Any] = concurrent.futures.Future()
        self._work.put((fn, arg, fut))
        return asyncio.wrap_future(fut)

    def _loop(self) -> None:
        while True:
            item = self._work.get()
            if item is None:
                return
            fn, arg, fut = item
            if not fut.set_running_or_notify_cancel():
                continue
            try:
                fut.set_result(fn(arg))
            except BaseException as e:
                fut.set_exception(e)

    def shutdown(self) -> None:
        for _ in self._threads:
            self._work.put(None)
        self._threads = []


# ----- the worker --------------------------------------------------------------------


class Worker:
    """Runs `handler` on the jobs of `queue` with up to `concurrency` at once.

    `source`: a `Client` or `AsyncClient` (a job server) or an `Engine` (embedded).
    `transport`: "http" (default) or "ws" (pull/ack/fail over one WebSocket, whose
    jobs the server releases when it closes) for server sources. `poll_timeout`: the
    long-poll time of each pull (s). `grace`: how long shutdown waits for running jobs
    (s). `heartbeat`: lease renewal period on an Engine (None: a third of its stall
    interval). `handle_signals`: stop on SIGTERM/SIGINT when run in the main thread.
    `retry_delay`: first pause after a connection error (doubles up to 5 s).
    """

    def __init__(
        self,
        source: Source,
        queue: str,
        handler: Handler,
        *,
        concurrency: int = 1,
        transport: Literal["http", "ws"] = "http",
        poll_timeout: float = 5.0,
        grace: float = 30.0,
        heartbeat: float | None = None,
        handle_signals: bool = True,
        retry_delay: float = 0.5,
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        if not 0 < poll_timeout <= 60:
            raise ValueError("poll_timeout must be in (0, 60] seconds")
        if transport not in ("http", "ws"):
            raise ValueError('transport must be "http" or "ws"')
        if not isinstance(source, Client | AsyncClient | Engine):
            raise TypeError("source must be a hopper.Client, hopper.AsyncClient or hopper.Engine")
        self.source = source
        self.queue = queue
        self.handler = handler
        self.concurrency = concurrency
        self.transport = transport
        self.poll_timeout = poll_timeout
        self.grace = grace
        self.heartbeat = heartbeat
        self.handle_signals = handle_signals
        self.retry_delay = retry_delay
        # A coroutine function, or an object whose __call__ is one.
        self._is_async = inspect.iscoroutinefunction(handler) or inspect.iscoroutinefunction(
            getattr(type(handler), "__call__", None)  # noqa: B004
        )
        self.processed = 0
        self.failed = 0
        self.released = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_requested = False
        self._force_requested = False
        self._stop_ev: asyncio.Event | None = None
        self._force_ev: asyncio.Event | None = None
        self._active: dict[asyncio.Task[None], ActiveJob] = {}
        self._pulling: set[asyncio.Task[None]] = set()
        self._threads: _Threads | None = None
        self._fatal: BaseException | None = None
        self._beat: float | None = heartbeat
        self._beat_task: asyncio.Task[None] | None = None

    @property
    def stopping(self) -> bool:
        return self._stop_requested

    # ----- control ---------------------------------------------------------------------

    def run(self) -> None:
        """Runs until stopped (blocking, with its own event loop)."""
        asyncio.run(self.run_async())

    def stop(self, grace: float | None = None) -> None:
        """Asks the worker to shut down (any thread, idempotent); see the module doc."""
        if grace is not None:
            self.grace = grace
        loop = self._loop
        if loop is None or loop.is_closed():
            self._stop_requested = True
            return
        try:
            current = asyncio.get_running_loop()
        except RuntimeError:
            current = None
        if current is loop:
            self._request_stop(False)
        else:
            loop.call_soon_threadsafe(self._request_stop, False)

    def _request_stop(self, force: bool) -> None:
        already = self._stop_requested
        self._stop_requested = True
        if self._stop_ev is not None:
            self._stop_ev.set()
        if force or (already and self._force_requested):
            self._force_requested = True
            if self._force_ev is not None:
                self._force_ev.set()

    def _on_signal(self, signum: int) -> None:
        if self._stop_requested:
            log.warning("second %s: releasing running jobs now", signal.Signals(signum).name)
            self._request_stop(True)
        else:
            log.info("%s: stopping (grace %.1f s)", signal.Signals(signum).name, self.grace)
            self._request_stop(False)

    # ----- main loop -------------------------------------------------------------------

    async def run_async(self) -> None:
        """Runs until stopped, on the running event loop."""
        if self._loop is not None and not self._loop.is_closed() and self._stop_ev is not None:
            raise RuntimeError("this worker is already running")
        loop = asyncio.get_running_loop()
        self._loop = loop
        self._stop_ev = asyncio.Event()
        self._force_ev = asyncio.Event()
        self._fatal = None
        if self._stop_requested:
            self._stop_ev.set()
        backend = self._backend()
        signals: list[signal.Signals] = []
        try:
            await backend.open()
            if self.handle_signals and threading.current_thread() is threading.main_thread():
                for sig in (signal.SIGTERM, signal.SIGINT):
                    loop.add_signal_handler(sig, self._on_signal, int(sig))
                    signals.append(sig)
            if not self._is_async:
                self._threads = _Threads(self.concurrency)
            slots = [asyncio.create_task(self._slot(backend)) for _ in range(self.concurrency)]
            await self._stop_ev.wait()
            await self._shutdown(backend, slots)
        finally:
            for sig in signals:
                loop.remove_signal_handler(sig)
            if self._beat_task is not None:
                self._beat_task.cancel()
                self._beat_task = None
            if self._threads is not None:
                self._threads.shutdown()
                self._threads = None
            await backend.close()
            self._stop_ev = None
            self._force_ev = None
            self._stop_requested = self._force_requested = False
        if self._fatal is not None:
            raise self._fatal

    def _backend(self) -> _Backend:
        source = self.source
        if isinstance(source, Engine):
            return _EngineBackend(source)
        made: AsyncClient | None = None
        if isinstance(source, Client):
            made = AsyncClient.like(source, max_connections=self.concurrency + 4)
            client = made
        else:
            client = source
        if self.transport == "ws":
            return _WsBackend(client.channel(), made)
        return _HttpBackend(client, owned=made is not None)

    async def _shutdown(self, backend: _Backend, slots: list[asyncio.Task[None]]) -> None:
        for task in list(self._pulling):
            task.cancel()
        running = [t for t in slots if not t.done()]
        if running and self.grace > 0:
            assert self._force_ev is not None
            loop = asyncio.get_running_loop()
            deadline = loop.time() + self.grace
            force = asyncio.create_task(self._force_ev.wait())
            try:
                while not force.done():
                    left = [t for t in running if not t.done()]
                    remaining = deadline - loop.time()
                    if not left or remaining <= 0:
                        break
                    await asyncio.wait(
                        [*left, force], timeout=remaining, return_when=asyncio.FIRST_COMPLETED
                    )
            finally:
                force.cancel()
        running = [t for t in slots if not t.done()]
        if running:
            unfinished = [self._active[t] for t in running if t in self._active]
            for active in unfinished:
                active.released = True
            self.released += len(unfinished)
            if unfinished:
                log.warning("releasing %d unfinished job(s) at shutdown", len(unfinished))
                await backend.release([a.job for a in unfinished])
            for t in running:
                t.cancel()
        await asyncio.gather(*slots, return_exceptions=True)

    async def _slot(self, backend: _Backend) -> None:
        task = asyncio.current_task()
        assert task is not None and self._stop_ev is not None
        delay = self.retry_delay
        while not self._stop_ev.is_set():
            self._pulling.add(task)
            try:
                job = await backend.pull(self.queue, self.poll_timeout)
            except (AuthError, InvalidInputError) as e:
                log.error("worker stops: %s", e)
                if self._fatal is None:
                    self._fatal = e
                self._request_stop(False)
                return
            except HopperError as e:
                log.warning("pull failed (%s); retrying in %.1f s", e, delay)
                await self._pause(delay)
                delay = min(delay * 2, 5.0)
                continue
            finally:
                self._pulling.discard(task)
            delay = self.retry_delay
            if job is not None:
                await self._process(backend, task, job)

    async def _pause(self, seconds: float) -> None:
        assert self._stop_ev is not None
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._stop_ev.wait(), seconds)

    async def _process(self, backend: _Backend, task: asyncio.Task[None], job: Job) -> None:
        active = ActiveJob(job, backend, self)
        self._active[task] = active
        try:
            if backend.can_extend and self._beat_task is None:
                self._start_heartbeat(backend, job)
            try:
                if self._is_async:
                    result = await self.handler(active)
                else:
                    assert self._threads is not None
                    result = await self._threads.run(self.handler, active)
                    if inspect.isawaitable(result):
                        result = await result
            except Exception as e:
                if not active.released:
                    self.failed += 1
                    self._log_failure(job, e)
                    await self._settle(backend.fail, job, error_text(e), error_stack(e))
                return
            if active.released:
                return
            try:
                if await self._settle(backend.ack, job, result):
                    self.processed += 1
            except InvalidInputError as e:  # e.g. a result that is not JSON
                self.failed += 1
                log.warning("job %s: cannot ack the result: %s", job.id, e)
                await self._settle(backend.fail, job, f"cannot ack the result: {e}")
        finally:
            self._active.pop(task, None)

    def _log_failure(self, job: Job, exc: Exception) -> None:
        """The handler's exception, with its traceback: a warning while attempts remain,
        an error on the last one."""
        attempt = job.attempts + 1
        last = attempt >= job.max_attempts
        log.log(
            logging.ERROR if last else logging.WARNING,
            "job %s (queue %s) failed on attempt %d of %d%s: %s",
            job.id,
            job.queue,
            attempt,
            job.max_attempts,
            "" if last else ", will retry",
            error_text(exc),
            exc_info=exc,
        )

    async def _settle(self, call: Callable[..., Any], job: Job, *values: Any) -> bool:
        """Acks or fails, retrying connection errors; False when the lease was lost (the
        job stalled or was released and may be running elsewhere)."""
        tries = 3
        for attempt in range(tries):
            try:
                await call(job, *values)
                return True
            except (InvalidStateError, LockError) as e:
                log.warning("job %s: lease lost before it was settled (%s)", job.id, e)
                return False
            except UnavailableError as e:
                if attempt == tries - 1:
                    log.warning("job %s: not settled (%s); the server will redeliver", job.id, e)
                    return False
                await asyncio.sleep(self.retry_delay * (attempt + 1))
        return False

    # ----- leases (embedded) ---------------------------------------------------------

    def _start_heartbeat(self, backend: _Backend, job: Job) -> None:
        if self._beat is None:
            try:
                window = backend.extend(job)
            except HopperError:
                return
            if window is None:
                return
            self._beat = max(0.01, window / 3000)
        self._beat_task = asyncio.create_task(self._heartbeat(backend, self._beat))

    async def _heartbeat(self, backend: _Backend, period: float) -> None:
        while True:
            await asyncio.sleep(period)
            for active in list(self._active.values()):
                if active.released:
                    continue
                try:
                    backend.extend(active.job)
                except HopperError as e:
                    log.debug("lease of %s not renewed: %s", active.id, e)

"""The ASGI application of the job server: CORS preflight, rate limit, auth, routing,
and the `{ok:false,error}` envelope for every failure, in that order, in one place."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
import threading
import time
from types import FrameType
from typing import TYPE_CHECKING, Any

from hopper.engine import Engine
from hopper.errors import (
    HopperError,
    InvalidInputError,
    InvalidStateError,
    LockError,
    NotFoundError,
    UnavailableError,
)
from hopper.server import openapi
from hopper.server.auth import TokenCheck
from hopper.server.config import ServerConfig
from hopper.server.dashboard import Dashboard
from hopper.server.events import EventHub
from hopper.server.http import (
    HttpError,
    Receive,
    Request,
    Response,
    Scope,
    Send,
    error,
    send_response,
)
from hopper.server.management.api import Management
from hopper.server.prometheus import Metrics
from hopper.server.rate_limit import RateLimiter, client_key
from hopper.server.router import MUTATING, Auth, Router
from hopper.server.routes import events as event_routes
from hopper.server.routes import jobs, websocket
from hopper.server.routes import monitoring as monitoring_routes
from hopper.server.server_engine import ServerEngine
from hopper.server.throughput import Throughput

if TYPE_CHECKING:
    from hopper.server.routes.websocket import Connection

log = logging.getLogger("hopper.server")

_STATUS = {
    InvalidInputError: 400,
    InvalidStateError: 400,
    LockError: 400,
    NotFoundError: 404,
    UnavailableError: 503,
}

# Longest a SIGTERM waits for WebSocket close frames before Granian's shutdown starts.
CLOSE_GRACE_S = 1.0
PREFLIGHT_HEADERS = [
    (b"access-control-allow-methods", b"GET, POST, PUT, DELETE, OPTIONS"),
    (b"access-control-allow-headers", b"Content-Type, Authorization"),
    (b"access-control-max-age", b"86400"),
]


def status_of(e: HopperError) -> int:
    """HTTP status of an engine error: the one mapping for the job server."""
    return _STATUS.get(type(e), 400)


class ServerState:
    """What routes share: the engine, config, event hub, counters."""

    def __init__(self, config: ServerConfig, engine: ServerEngine) -> None:
        self.config = config
        self.engine = engine
        self.hub = EventHub(engine)
        self.started = time.time()
        self.connections = {"tcp": 0, "ws": 0, "sse": 0}
        self.throughput = Throughput()
        self.metrics = Metrics(self)
        self.ws_ids = iter(range(1, 2**62))
        self.sockets: set[Connection] = set()
        self._tasks: set[asyncio.Task[None]] = set()

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
        while self.sockets and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.01)

    def begin_shutdown(self) -> None:
        """SIGTERM/SIGINT: end long polls, SSE streams and WebSockets so that Granian's
        wait for in-flight requests finishes promptly."""
        self.engine.interrupt_waits()
        self.hub.close_all()
        for conn in list(self.sockets):
            self.track(conn.close_going_away())


def announce_storage(config: ServerConfig, engine: Engine) -> None:
    """One start-up line on where the data lives and what recovery did, and every
    recovery warning (a torn tail cut, records a repair dropped)."""
    report = engine.recovery_report()
    if report is None:
        print("[INFO] hopper: in memory (--memory): nothing survives a restart", file=sys.stderr)
        return
    print(
        f"[INFO] hopper: data directory {os.path.abspath(config.data_dir)}, fsync {config.fsync}: "
        f"recovered {report['jobs']} jobs in {report['millis']} ms "
        f"(snapshot {report['snapshot']}, {report['segments']} log segments, "
        f"{report['records']} records)",
        file=sys.stderr,
    )
    for warning in report["warnings"]:
        print(f"[WARNING] hopper: {warning}", file=sys.stderr)
    sys.stderr.flush()


class HopperApp:
    def __init__(self, config: ServerConfig, engine: ServerEngine | None = None) -> None:
        self.config = config
        self._own_engine = engine is None
        self.engine = engine or ServerEngine(**config.engine_options())
        if self._own_engine:
            announce_storage(config, self.engine)
        self.state = ServerState(config, self.engine)
        self.tokens = TokenCheck(config.auth_tokens)
        self.limiter = RateLimiter(
            config.rate_limit_window_ms,
            config.rate_limit_max_requests,
            config.rate_limit_cleanup_ms,
        )
        self.cors = [(b"access-control-allow-origin", config.cors_allow_origin.encode())]
        # Neither a rate limit nor auth configured: admission has nothing to check.
        self._open = not self.limiter.enabled and not self.tokens.enabled
        self.router = Router()
        for module in (jobs, monitoring_routes, event_routes, websocket):
            module.register(self.router, self.state)
        self.management = Management(self.state, self.tokens, self.limiter)
        self.dashboard = Dashboard(self.management.base)
        openapi.register(self.router, self.management)
        self._sampler: asyncio.Task[None] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "websocket":
            await self._websocket(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)

    # ----- HTTP ----------------------------------------------------------------------

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        method: str = scope["method"]
        path: str = scope["path"]
        if self.management.owns(path):
            await self.management.handle(scope, receive, send, self.cors)
            return
        page = self.dashboard.response(method, path)
        if page is not None:
            await self.dashboard.serve(send, page, method == "HEAD")
            return
        if method == "OPTIONS":
            await send_response(send, Response(204, b"", headers=PREFLIGHT_HEADERS), self.cors)
            return
        found = self.router.match(method, path)
        request = Request(scope, receive, method, path, {}, self.config.max_body_bytes)
        try:
            if found is None:
                raise HttpError(404, "Not found")
            route, request.params = found
            self._admit(request, route.auth, route.rate_limited)
            if route.streaming:
                await route.handler(request, send, self.cors)
                return
            response: Response = await route.handler(request)
        except HttpError as e:
            response = error(e.status, e.message)
        except HopperError as e:
            response = error(status_of(e), str(e))
        except Exception:
            # A bug, not bad input: keep the envelope, and leave a trace in the log.
            log.exception("unhandled error in %s %s", method, path)
            response = error(500, "Internal server error")
        if method in MUTATING:
            try:
                pending = self.engine.commit_pending()
                if pending is not None:
                    await pending
            except HopperError as e:
                response = error(status_of(e), str(e))
        await send_response(send, response, self.cors)

    def _admit(self, request: Request, auth: Auth, rate_limited: bool) -> None:
        """Rate limit first (so rejected requests count too), then auth."""
        if self._open:
            return
        if rate_limited and self.limiter.enabled:
            key = client_key(request.header(b"x-forwarded-for"), request.header(b"x-real-ip"))
            if not self.limiter.allow(key, time.monotonic_ns() // 1_000_000):
                raise HttpError(429, "Rate limit exceeded")
        if not self.tokens.enabled:
            return
        needs_auth = auth is Auth.REQUIRED or (auth is Auth.METRICS and self.config.metrics_auth)
        if needs_auth and not self.tokens.header_ok(request.header(b"authorization")):
            raise HttpError(401, "Unauthorized")

    # ----- WebSocket -----------------------------------------------------------------

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        found = self.router.match("WS", scope["path"])
        request = Request(scope, receive, "WS", scope["path"], {}, self.config.max_body_bytes)
        reason = None
        if found is None:
            reason = (404, "Not found")
        else:
            try:
                self._admit(request, found[0].auth, found[0].rate_limited)
            except HttpError as e:
                reason = (e.status, e.message)
        if reason is not None or found is None:
            await websocket.reject(scope, receive, send, *(reason or (404, "Not found")), self.cors)
            return
        request.params = found[1]
        await found[0].handler(request, send, self.tokens)

    # ----- lifespan ------------------------------------------------------------------

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self._sampler = asyncio.create_task(self.state.throughput.run(self.engine))
                self._hook_signals(asyncio.get_running_loop())
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self._sampler is not None:
                    self._sampler.cancel()
                if self._own_engine:
                    self.engine.close()
                await send({"type": "lifespan.shutdown.complete"})
                return

    def _hook_signals(self, loop: asyncio.AbstractEventLoop) -> None:
        """Ends long polls, SSE streams and WebSockets (waiting, bounded, for the closing
        handshakes) on SIGUSR1, which the main process sends before it stops the workers
        (server/main.py), and on SIGTERM/SIGINT, which then go on to whatever handled them
        before (Granian's own shutdown). Python runs the handlers on this thread; the
        loop is woken through its wakeup fd."""
        if threading.current_thread() is not threading.main_thread():
            return  # only the main thread may set handlers; the kill timeout still applies

        async def end_streams(then: Any = None, signum: int = 0, frame: Any = None) -> None:
            self.state.begin_shutdown()
            await self.state.closes_sent(CLOSE_GRACE_S)
            if callable(then):
                then(signum, frame)

        def streams_only(signum: int, frame: FrameType | None) -> None:
            loop.call_soon_threadsafe(lambda: self.state.track(end_streams()))

        signal.signal(signal.SIGUSR1, streams_only)
        for sig in (signal.SIGTERM, signal.SIGINT):
            previous = signal.getsignal(sig)

            def handler(signum: int, frame: FrameType | None, previous: Any = previous) -> None:
                loop.call_soon_threadsafe(
                    lambda: self.state.track(end_streams(previous, signum, frame))
                )

            signal.signal(sig, handler)


def create_app(config: ServerConfig | None = None) -> HopperApp:
    """The ASGI app; `config` defaults to the environment (see `hopper serve --help`)."""
    from hopper.server.config import load

    return HopperApp(config or load())

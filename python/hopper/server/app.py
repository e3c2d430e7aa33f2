"""The job server application: the engine, the two APIs (job server, management) on one
pipeline, the dashboard, and both Granian interfaces over it: an instance is an ASGI app
(`__call__`) and an RSGI app (`__rsgi__`) sharing every handler."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import threading
from types import FrameType
from typing import Any

from hopper.engine import Engine
from hopper.server import openapi
from hopper.server.admission import Admission
from hopper.server.asgi import AsgiInterface, Receive, Scope, Send
from hopper.server.auth import TokenCheck
from hopper.server.cluster import watch_slot
from hopper.server.config import ServerConfig
from hopper.server.cors import Cors
from hopper.server.dashboard import Dashboard
from hopper.server.job_api import JobServerApi
from hopper.server.management.api import Management
from hopper.server.operations import JobOperations
from hopper.server.pipeline import Pipeline
from hopper.server.rate_limit import RateLimiter
from hopper.server.routes import events as event_routes
from hopper.server.routes import jobs, websocket
from hopper.server.routes import monitoring as monitoring_routes
from hopper.server.rsgi import RsgiInterface
from hopper.server.server_engine import ServerEngine
from hopper.server.state import ServerState
from hopper.server.tcp import TcpListener

# Longest a SIGTERM waits for WebSocket close frames before Granian's shutdown starts.
CLOSE_GRACE_S = 1.0
# The pid of the Granian main process that runs this app's workers, set by `run_server`
# in their environment: that process sends SIGUSR1 as its shutdown begins.
MAIN_PID_ENV = "HOPPER_MAIN_PID"
# How long a worker signalled together with its main process waits for that SIGUSR1.
MAIN_WAIT_S = 1.0


def announce_storage(config: ServerConfig, engine: Engine) -> None:
    """One start-up line on where the data lives and what recovery did, and every
    recovery warning (a torn tail cut, records a repair dropped)."""
    report = engine.recovery_report()
    if report is None:
        print("[INFO] hopper: in memory (--memory): nothing survives a restart", file=sys.stderr)
        return
    where = (
        f"the cluster slot of namespace '{config.namespace}' in PostgreSQL"
        if config.postgres_url
        else f"data directory {os.path.abspath(config.data_dir)}"
    )
    print(
        f"[INFO] hopper: {where}, fsync {config.fsync}: "
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
        if engine is None and config.postgres_url:
            print(
                "[INFO] hopper: waiting to own the cluster slot (another broker may hold it)",
                file=sys.stderr,
                flush=True,
            )
        self.engine = engine or ServerEngine(**config.engine_options())
        if self._own_engine:
            announce_storage(config, self.engine)
        self.state = ServerState(config, self.engine)
        admission = Admission(
            TokenCheck(config.auth_tokens),
            RateLimiter(
                config.rate_limit_window_ms,
                config.rate_limit_max_requests,
                config.rate_limit_cleanup_ms,
            ),
        )
        self.operations = JobOperations(self.engine, self.state.metrics)
        self.job_api = job_api = JobServerApi(admission, config.metrics_auth)
        jobs.register(job_api.router, self.state, self.operations)
        monitoring_routes.register(job_api.router, self.state)
        event_routes.register(job_api.router, self.state)
        websocket.register(job_api.router, self.state)
        self.management = Management(self.state, admission)
        openapi.register(job_api.router, self.management)
        self.pipeline = Pipeline(
            self.engine,
            self.state.hub.gate,
            self.management,
            job_api,
            Dashboard(self.management.base),
            Cors(config.cors_allow_origin),
            config.max_body_bytes,
        )
        # bunqueue's TCP protocol, served by the same process when it has a port.
        self.tcp = TcpListener(self.state, config) if config.tcp_port else None
        self.asgi = AsgiInterface(self.pipeline, self._started, self._stopped)
        self.rsgi = RsgiInterface(self.pipeline, self._started, self._stopped)
        self._sampler: asyncio.Task[None] | None = None
        self._slot_watch: asyncio.Task[None] | None = None

    # ----- the two interfaces --------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.asgi(scope, receive, send)

    async def __rsgi__(self, scope: Any, protocol: Any) -> None:
        await self.rsgi.__rsgi__(scope, protocol)

    def __rsgi_init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.rsgi.__rsgi_init__(loop)

    def __rsgi_del__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.rsgi.__rsgi_del__(loop)

    # ----- start and stop ------------------------------------------------------------

    def _started(self, loop: asyncio.AbstractEventLoop) -> None:
        self.engine.serve_on(loop)
        self._sampler = loop.create_task(self.state.throughput.run(self.engine))
        self.state.webhooks.start(loop)
        if self.tcp is not None:
            self.tcp.start(loop)
        if self.config.postgres_url and self._own_engine:
            self._slot_watch = loop.create_task(watch_slot(self.engine))
        self._hook_signals(loop)

    def _stopped(self) -> None:
        if self.tcp is not None:
            self.tcp.go_away()
        for task in (self._sampler, self._slot_watch):
            if task is not None:
                task.cancel()
        self.state.webhooks.stop()
        if self._own_engine:
            self.engine.close()

    def _hook_signals(self, loop: asyncio.AbstractEventLoop) -> None:
        """Ends long polls, SSE streams and WebSockets (waiting, bounded, for the closing
        handshakes) on SIGUSR1, which the main process sends before it stops the workers
        (server/main.py), and on SIGTERM/SIGINT, which then go on to whatever handled them
        before (Granian's own shutdown). Python runs the handlers on this thread; the
        loop is woken through its wakeup fd."""
        if threading.current_thread() is not threading.main_thread():
            return  # only the main thread may set handlers; the kill timeout still applies
        main_stopping = asyncio.Event()
        under_main = os.environ.get(MAIN_PID_ENV) == str(os.getppid())

        async def end_streams(then: Any = None, signum: int = 0, frame: Any = None) -> None:
            self.state.begin_shutdown()
            await self.state.closes_sent(CLOSE_GRACE_S)
            if callable(then):
                if under_main:
                    # A signal to the whole process group (Ctrl-C, `systemctl stop`)
                    # reached the main process too: exit once its shutdown has begun,
                    # so that this exit is part of it (server/main.py).
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(main_stopping.wait(), MAIN_WAIT_S)
                then(signum, frame)

        def streams_only(signum: int, frame: FrameType | None) -> None:
            def begin() -> None:
                main_stopping.set()
                self.state.track(end_streams())

            loop.call_soon_threadsafe(begin)

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

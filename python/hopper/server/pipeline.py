"""The one request pipeline, for every API and both Granian interfaces: CORS preflight,
HEAD, route match, admission, back-pressure, the call, engine and HTTP errors to the
API's envelope, and the wait for the log after anything that changes state, in that
order. The job server and the management API differ only in their `Api` (envelope,
admission, preflight); ASGI and RSGI only in their adapters (`asgi.py`, `rsgi.py`)."""

from __future__ import annotations

import asyncio
import logging
from abc import ABC, abstractmethod
from collections.abc import Callable

from hopper.errors import HopperError
from hopper.server.cors import Cors
from hopper.server.dashboard import Dashboard
from hopper.server.events import FlowGate
from hopper.server.http import (
    HttpError,
    Request,
    Response,
    Upgrade,
    status_of,
)
from hopper.server.router import MUTATING, Kind, Route, Router
from hopper.server.server_engine import ServerEngine

log = logging.getLogger("hopper.server")


class Api(ABC):
    """One API: its routes (relative to `prefix`), envelope and admission policy."""

    prefix = ""
    head_as_get = False  # HEAD answers as the GET route, without the body
    preflight: Response

    def __init__(self) -> None:
        self.router = Router()

    def owns(self, path: str) -> bool:
        """Whether `path` is the prefix or under it (any path, without a prefix)."""
        prefix = self.prefix
        return path.startswith(prefix) and path[len(prefix) : len(prefix) + 1] in "/"

    @abstractmethod
    def error(self, status: int, message: str, code: str | None = None) -> Response:
        """The API's error envelope."""

    @abstractmethod
    def admit(self, req: Request, route: Route | None) -> None:
        """Raises HttpError if the request may not go on (`route` None: no route matched)."""

    def not_found(self, req: Request) -> HttpError:
        return HttpError(404, "Not found")

    def method_not_allowed(self, req: Request, allow: list[str]) -> HttpError:
        """A known path asked for with a method none of its routes answers."""
        return HttpError(
            405,
            f"Method {req.method} not allowed",
            "METHOD_NOT_ALLOWED",
            headers=[("allow", ", ".join(allow))],
        )

    def unrouted(self, req: Request, path: str) -> HttpError:
        """No route matched `path` (relative to the prefix) for this method: a 405 with
        `Allow` when other methods have a route there, else the API's 404."""
        methods = [m for m in self.router.allowed(path) if m != "WS"]  # sockets: no HTTP
        if not methods:
            return self.not_found(req)
        if self.head_as_get and "GET" in methods:
            methods.insert(methods.index("GET") + 1, "HEAD")
        return self.method_not_allowed(req, [*methods, "OPTIONS"])  # OPTIONS: preflight


class Pipeline:
    def __init__(
        self,
        engine: ServerEngine,
        gate: FlowGate,
        management: Api,
        jobs: Api,
        dashboard: Dashboard,
        cors: Cors,
        max_body: int,
    ) -> None:
        """`management` owns the paths under its prefix, `jobs` (the job server) the rest."""
        self.engine = engine
        self.gate = gate
        self.management = management
        self.jobs = jobs
        self.dashboard = dashboard
        self.cors = cors
        self.max_body = max_body

    async def http(self, req: Request) -> None:
        method = req.method
        path = req.path
        api = self.management if self.management.owns(path) else self.jobs
        if method == "OPTIONS":
            await req.respond(api.preflight)
            return
        relative = path[len(api.prefix) :] or "/"
        found = api.router.match(
            "GET" if method == "HEAD" and api.head_as_get else method, relative
        )
        if found is None and api is self.jobs:
            page = self.dashboard.response(method, path)  # the page: none of the job routes
            if page is not None:
                await req.respond(page.without_body() if method == "HEAD" else page, cors=False)
                return
        stream = None
        try:
            route = None
            if found is not None:
                route, req.params = found
            api.admit(req, route)
            if route is None:
                raise api.unrouted(req, relative)
            if route.kind is Kind.SOCKET:
                raise api.not_found(req)  # a WebSocket route asked for over plain HTTP
            if route.kind is Kind.STREAM:
                stream = req.stream()
                await route.handler(req, stream, self.cors.headers(req.header("origin")))
                return
            if method in MUTATING and self.gate.heavy:
                await self.gate.wait()  # a consumer that reads is behind: slow producers
            answer: Response | bytes = await route.handler(req)
            response = Response(200, answer) if isinstance(answer, bytes) else answer
        except HttpError as e:
            response = api.error(e.status, e.message, e.code)
            if e.headers:
                response.headers.extend(e.headers)
        except HopperError as e:
            response = api.error(status_of(e), str(e))
        except Exception:
            # A bug, not bad input: keep the envelope, and leave a trace in the log.
            log.exception("unhandled error in %s %s", method, path)
            response = api.error(500, "Internal server error")
        if stream is not None and stream.opened:
            return  # a stream that failed midway: its status is sent, nothing to add
        if method in MUTATING:
            try:
                pending = self.engine.commit_pending()
                if pending is not None:
                    await pending
            except HopperError as e:
                response = api.error(status_of(e), str(e))
        await req.respond(response.without_body() if method == "HEAD" else response)

    async def websocket(self, req: Request, upgrade: Upgrade) -> None:
        api = self.jobs  # only the job server has sockets
        found = api.router.match("WS", req.path)
        try:
            if found is None:
                raise api.not_found(req)
            route, req.params = found
            api.admit(req, route)
        except HttpError as e:
            await upgrade.reject(api.error(e.status, e.message, e.code))
            return
        await route.handler(req, await upgrade.accept())


class Interface:
    """What each Granian interface's entry object holds (`asgi.py`, `rsgi.py`): the
    pipeline, and the app's hooks for when serving starts (with its loop) and stops."""

    def __init__(
        self,
        pipeline: Pipeline,
        on_start: Callable[[asyncio.AbstractEventLoop], None],
        on_stop: Callable[[], None],
    ) -> None:
        self.pipeline = pipeline
        self._on_start, self._on_stop = on_start, on_stop

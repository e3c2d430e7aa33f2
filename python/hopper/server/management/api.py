"""The management API under `{basePath}/api`: its envelope (`{data}`, `{data, meta}`,
`{error:{code,message}}`) and admission (rate limit, then the job server's bearer tokens,
with `/api/config` and preflight open and `?token=` for streams, then read-only mode),
served by the one pipeline (`pipeline.py`). The queue allow-list is applied by every
route through `queue()`/`visible()`, so a hidden queue is NOT_FOUND whichever URL names
it."""

from __future__ import annotations

from typing import Any

import orjson

from hopper.server.admission import Admission
from hopper.server.config import base_path
from hopper.server.http import HttpError, Request, Response
from hopper.server.pipeline import Api
from hopper.server.router import MUTATING, Auth, Doc, Kind, Route
from hopper.server.state import ServerState

MAX_SAFE_INT = 2**53 - 1
CODE_OF_STATUS = {
    400: "BAD_REQUEST",
    401: "UNAUTHORIZED",
    403: "FORBIDDEN",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    413: "PAYLOAD_TOO_LARGE",
    429: "RATE_LIMITED",
    500: "INTERNAL_ERROR",
    503: "UNAVAILABLE",
}


def bad_request(message: str) -> HttpError:
    return HttpError(400, message, "BAD_REQUEST")


def not_found(message: str) -> HttpError:
    return HttpError(404, message, "NOT_FOUND")


def data(value: Any, status: int = 200) -> Response:
    return Response(status, orjson.dumps({"data": value}))


def page(items: list[Any], total: int, start: int, end: int) -> Response:
    return Response(
        200, orjson.dumps({"data": items, "meta": {"total": total, "start": start, "end": end}})
    )


async def json_body(req: Request) -> Any:
    """The parsed body; None when empty. Malformed JSON is a BAD_REQUEST."""
    raw = await req.body()
    if not raw.strip():
        return None
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise bad_request("Valid JSON body is required") from None


def int_param(req: Request, name: str, default: int) -> int:
    raw = req.query.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise bad_request(f"{name} must be an integer") from None
    # Past this the value cannot be echoed in JSON (orjson: 64 bits; JavaScript: 2^53).
    if abs(value) > MAX_SAFE_INT:
        raise bad_request(f"{name} must be an integer of at most {MAX_SAFE_INT} in size")
    return value


def state_param(raw: str | None, allowed: tuple[str, ...], name: str = "state") -> str:
    if raw not in allowed:
        raise bad_request(f"{name} must be one of: {', '.join(allowed)}")
    return raw


class Management(Api):
    """The management API on one server's engine and settings."""

    head_as_get = True
    preflight = Response(
        204,
        b"",
        "",
        headers=[
            ("access-control-allow-methods", "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"),
            ("access-control-allow-headers", "Content-Type, Authorization"),
            ("access-control-max-age", "86400"),
        ],
    )

    def __init__(self, state: ServerState, admission: Admission) -> None:
        from hopper.server.management import (
            cluster,
            insights,
            jobs,
            queues,
            schedulers,
            streams,
            workers,
        )

        super().__init__()
        config = state.config
        self.state = state
        self.engine = state.engine
        self.base = base_path(config.dashboard_base_path)
        self.prefix = self.base + "/api"
        self.read_only = config.dashboard_read_only
        self.metrics_enabled = config.dashboard_metrics
        self.allow = frozenset(config.dashboard_queues)
        self.admission = admission
        for module in (queues, jobs, insights, streams, workers, schedulers, cluster):
            module.register(self)

    # ----- what routes use --------------------------------------------------------------

    def add(self, method: str, path: str, handler: Any, doc: Doc, **kw: Any) -> None:
        self.router.add(method, path, handler, doc=doc, **kw)

    def visible(self, queue: str) -> bool:
        return not self.allow or queue in self.allow

    def queue(self, req: Request) -> str:
        """The `:name` of the URL, NOT_FOUND if the allow-list hides it."""
        name = req.params["name"]
        if not self.visible(name):
            raise not_found(f'Queue "{name}" not found')
        return name

    def existing_queue(self, req: Request) -> str:
        name = self.queue(req)
        if not self.engine.has_queue(name):
            raise not_found(f'Queue "{name}" not found')
        return name

    def queues(self) -> list[str]:
        return [q for q in self.engine.queues() if self.visible(q)]

    def routes(self) -> list[Route]:
        return self.router.routes()

    # ----- the pipeline's policy --------------------------------------------------------

    def error(self, status: int, message: str, code: str | None = None) -> Response:
        code = code or CODE_OF_STATUS.get(status, "BAD_REQUEST")
        return Response(status, orjson.dumps({"error": {"code": code, "message": message}}))

    def not_found(self, req: Request) -> HttpError:
        return not_found(f"No route for {req.method} {req.path}")

    def admit(self, req: Request, route: Route | None) -> None:
        admission = self.admission
        if admission.over_limit(req):
            raise HttpError(429, "Rate limit exceeded", "RATE_LIMITED")
        if route is not None and route.auth is Auth.EXEMPT:
            return
        if admission.tokens.enabled and not self._authorized(req, route):
            raise HttpError(401, "Authentication required", "UNAUTHORIZED")
        if self.read_only and req.method in MUTATING:
            raise HttpError(403, "Dashboard is in read-only mode", "FORBIDDEN")

    def _authorized(self, req: Request, route: Route | None) -> bool:
        if self.admission.bearer_ok(req):
            return True
        # A browser EventSource cannot send headers: streams also take ?token=.
        token = req.query.get("token")
        return (
            route is not None and route.kind is Kind.STREAM and token is not None
        ) and self.admission.tokens.token_ok(token.encode())

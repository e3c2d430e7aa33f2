"""Dispatch for the management API under `{basePath}/api`: its envelope (`{data}`,
`{data, meta}`, `{error:{code,message}}`), then, in this order, CORS preflight, rate
limit, auth (the job server's bearer tokens; `/api/config` and preflight stay open),
read-only mode, routing. The queue allow-list is applied by every route through
`queue()`/`visible()`, so a hidden queue is NOT_FOUND whichever URL names it."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

import orjson

from hopper.errors import (
    HopperError,
    InvalidInputError,
    InvalidStateError,
    LockError,
    NotFoundError,
    UnavailableError,
)
from hopper.server.auth import TokenCheck
from hopper.server.config import base_path
from hopper.server.http import HttpError, Receive, Request, Response, Scope, Send, send_response
from hopper.server.rate_limit import RateLimiter, client_key
from hopper.server.router import MUTATING, Auth, Doc, Route, Router

if TYPE_CHECKING:
    from hopper.server.app import ServerState

log = logging.getLogger("hopper.management")

MAX_SAFE_INT = 2**53 - 1
PREFLIGHT_HEADERS = [
    (b"access-control-allow-methods", b"GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"),
    (b"access-control-allow-headers", b"Content-Type, Authorization"),
    (b"access-control-max-age", b"86400"),
]
CODE_OF_STATUS = {
    400: "BAD_REQUEST",
    401: "UNAUTHORIZED",
    403: "FORBIDDEN",
    404: "NOT_FOUND",
    413: "PAYLOAD_TOO_LARGE",
    429: "RATE_LIMITED",
    500: "INTERNAL_ERROR",
    503: "UNAVAILABLE",
}
STATUS_OF_ENGINE_ERROR: dict[type[HopperError], int] = {
    InvalidInputError: 400,
    InvalidStateError: 400,
    LockError: 400,
    NotFoundError: 404,
    UnavailableError: 503,
}


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def bad_request(message: str) -> ApiError:
    return ApiError(400, "BAD_REQUEST", message)


def not_found(message: str) -> ApiError:
    return ApiError(404, "NOT_FOUND", message)


def error_response(status: int, code: str, message: str) -> Response:
    return Response(status, orjson.dumps({"error": {"code": code, "message": message}}))


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


class Management:
    """The management API on one server's engine and settings."""

    def __init__(self, state: ServerState, tokens: TokenCheck, limiter: RateLimiter) -> None:
        from hopper.server.management import insights, jobs, queues, streams

        config = state.config
        self.state = state
        self.engine = state.engine
        self.base = base_path(config.dashboard_base_path)
        self.prefix = self.base + "/api"
        self.read_only = config.dashboard_read_only
        self.metrics_enabled = config.dashboard_metrics
        self.allow = frozenset(config.dashboard_queues)
        self.tokens = tokens
        self.limiter = limiter
        self.router = Router()
        for module in (queues, jobs, insights, streams):
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

    # ----- dispatch -----------------------------------------------------------------------

    def owns(self, path: str) -> bool:
        return path == self.prefix or path.startswith(self.prefix + "/")

    async def handle(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        cors: list[tuple[bytes, bytes]],
    ) -> None:
        method: str = scope["method"]
        path: str = scope["path"]
        if method == "OPTIONS":
            await send_response(send, Response(204, b"", headers=PREFLIGHT_HEADERS), cors)
            return
        sub = path[len(self.prefix) :] or "/"
        found = self.router.match("GET" if method == "HEAD" else method, sub)
        request = Request(scope, receive, method, path, {}, self.state.config.max_body_bytes)
        try:
            self._admit(request, found[0] if found else None)
            if found is None:
                raise not_found(f"No route for {method} {path}")
            route, request.params = found
            if route.streaming:
                await route.handler(request, send, cors)
                return
            response: Response = await route.handler(request)
        except ApiError as e:
            response = error_response(e.status, e.code, e.message)
        except HttpError as e:
            response = error_response(
                e.status, CODE_OF_STATUS.get(e.status, "BAD_REQUEST"), e.message
            )
        except HopperError as e:
            status = STATUS_OF_ENGINE_ERROR.get(type(e), 400)
            response = error_response(status, CODE_OF_STATUS[status], str(e))
        except Exception:
            log.exception("unhandled error in %s %s", method, path)
            response = error_response(500, "INTERNAL_ERROR", "Internal server error")
        if method in MUTATING:
            try:
                pending = self.engine.commit_pending()
                if pending is not None:
                    await pending
            except HopperError as e:
                status = STATUS_OF_ENGINE_ERROR.get(type(e), 503)
                response = error_response(status, CODE_OF_STATUS[status], str(e))
        if method == "HEAD":
            response = Response(response.status, b"", response.content_type, response.headers)
        await send_response(send, response, cors)

    def _admit(self, request: Request, route: Route | None) -> None:
        if self.limiter.enabled:
            key = client_key(request.header(b"x-forwarded-for"), request.header(b"x-real-ip"))
            if not self.limiter.allow(key, time.monotonic_ns() // 1_000_000):
                raise ApiError(429, "RATE_LIMITED", "Rate limit exceeded")
        if route is not None and route.auth is Auth.EXEMPT:
            return
        if self.tokens.enabled and not self._authorized(request, route):
            raise ApiError(401, "UNAUTHORIZED", "Authentication required")
        if self.read_only and request.method in MUTATING:
            raise ApiError(403, "FORBIDDEN", "Dashboard is in read-only mode")

    def _authorized(self, request: Request, route: Route | None) -> bool:
        if self.tokens.header_ok(request.header(b"authorization")):
            return True
        # A browser EventSource cannot send headers: streams also take ?token=.
        token = request.query.get("token")
        return (
            route is not None and route.streaming and token is not None
        ) and self.tokens.token_ok(token.encode())

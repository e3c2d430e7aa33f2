"""Maps (method, path) to a route. Paths are split on "/" once; a template segment
starting with ":" captures that segment. Lookup is by segment count, then a short scan."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import Enum
from typing import Any

# Methods whose answer waits for the log (`Engine.commit`): the pipeline awaits it after
# every such handler, so no route can forget it. GETs (pulls included) do not.
MUTATING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
METHOD_ORDER = ("GET", "POST", "PUT", "PATCH", "DELETE")  # of a 405's `Allow`


class Kind(Enum):
    """What a route's handler does with the connection."""

    JSON = "json"  # handler(request) -> Response
    STREAM = "stream"  # handler(request, stream, cors): an SSE response it writes itself
    SOCKET = "socket"  # handler(request, socket): an accepted WebSocket


class Auth(Enum):
    """Whether a route needs the bearer token."""

    REQUIRED = "required"
    EXEMPT = "exempt"
    METRICS = "metrics"  # required only when METRICS_AUTH is on


@dataclass(frozen=True, slots=True)
class Param:
    """A query parameter, for the OpenAPI document."""

    name: str
    schema: dict[str, Any]
    description: str = ""
    required: bool = False


@dataclass(frozen=True, slots=True)
class Doc:
    """What `/openapi.json` says of a route: written next to the route, so the document
    is generated from the table the server routes with."""

    summary: str
    tag: str
    response: dict[str, Any] | None = None  # schema of the success body
    status: int = 200
    body: dict[str, Any] | None = None  # schema of the JSON request body
    body_required: bool = False
    query: tuple[Param, ...] = ()
    errors: tuple[int, ...] = ()
    content_type: str = "application/json"
    description: str = ""


@dataclass(frozen=True, slots=True)
class Route:
    method: str
    template: tuple[str, ...]
    handler: Callable[..., Awaitable[Any]]
    auth: Auth = Auth.REQUIRED
    rate_limited: bool = True
    kind: Kind = Kind.JSON
    doc: Doc | None = None
    path: str = ""


RECENT_PATHS = 4096
RECENT_PATH_CHARS = 256


def split(path: str) -> tuple[str, ...]:
    return tuple(path.strip("/").split("/")) if path.strip("/") else ()


class Router:
    """Routes are indexed by (method, segment count, first segment), so a lookup checks
    one or two templates instead of every route."""

    def __init__(self) -> None:
        self._index: dict[tuple[str, int, str], list[Route]] = {}
        self._all: list[Route] = []
        # (method, path) -> match, for the paths clients repeat (one queue's push URL);
        # bounded, emptied when full. Captured params are shared: handlers only read them.
        self._recent: dict[tuple[str, str], tuple[Route, dict[str, str]]] = {}

    def add(
        self, method: str, path: str, handler: Callable[..., Awaitable[Any]], **kw: Any
    ) -> None:
        self._recent.clear()
        template = split(path)
        if template and template[0].startswith(":"):
            raise ValueError("a route's first segment must be literal")
        key = (method, len(template), template[0] if template else "")
        route = Route(method, template, handler, path=path, **kw)
        self._index.setdefault(key, []).append(route)
        self._all.append(route)

    def routes(self) -> list[Route]:
        """Every route, in registration order (for the OpenAPI document)."""
        return list(self._all)

    def match(self, method: str, path: str) -> tuple[Route, dict[str, str]] | None:
        """The route and its captured segments; None if no route has this path and method."""
        key = (method, path)
        found = self._recent.get(key)
        if found is not None:
            return found
        found = self._match(method, path)
        # Only matches of ordinary length are kept: misses and long paths would let any
        # client fill the cache with what it likes.
        if found is not None and len(path) <= RECENT_PATH_CHARS:
            if len(self._recent) >= RECENT_PATHS:
                self._recent.clear()
            self._recent[key] = found
        return found

    def allowed(self, path: str) -> list[str]:
        """The methods some route answers at `path` (for a 405's `Allow`), GET, POST,
        PUT, PATCH, DELETE first; empty when no route has this path."""
        methods = dict.fromkeys((*METHOD_ORDER, *(route.method for route in self._all)))
        return [m for m in methods if self._match(m, path) is not None]

    def _match(self, method: str, path: str) -> tuple[Route, dict[str, str]] | None:
        segments = split(path)
        routes = self._index.get((method, len(segments), segments[0] if segments else ""))
        if routes is None:
            return None
        for route in routes:
            params: dict[str, str] = {}
            for want, got in zip(route.template, segments, strict=True):
                if want[0] == ":":
                    if not got:
                        break
                    params[want[1:]] = got
                elif want != got:
                    break
            else:
                return route, params
        return None

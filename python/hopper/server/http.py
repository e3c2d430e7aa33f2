"""What a handler sees of HTTP and WebSocket, whichever Granian interface serves it (ASGI
or RSGI, see `asgi.py` and `rsgi.py`): one request type, one response type, a stream for
SSE, a socket for WebSocket, and the errors that end a request. Header names and values
are `str` (RSGI's native form; the ASGI adapter converts). No framework on the hot path:
a handler gets bytes in and hands bytes out."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from urllib.parse import parse_qsl

from hopper.errors import (
    HopperError,
    InvalidInputError,
    InvalidStateError,
    LockError,
    NotFoundError,
    UnavailableError,
)

Headers = list[tuple[str, str]]
NO_PARAMS: dict[str, str] = {}

JSON = "application/json"
# A body over the limit is still read (and dropped) up to this size so the 413 reaches
# the client; a larger one is refused without reading it.
MAX_DRAIN_BYTES = 64 * 1024 * 1024

# The status of each engine error, for every API (each wraps it in its own envelope).
_STATUS_OF_ENGINE_ERROR: dict[type[HopperError], int] = {
    InvalidInputError: 400,
    InvalidStateError: 400,
    LockError: 400,
    NotFoundError: 404,
    UnavailableError: 503,
}


def status_of(e: HopperError) -> int:
    return _STATUS_OF_ENGINE_ERROR.get(type(e), 400)


class HttpError(Exception):
    """Ends a request with the API's error envelope. `code` is the management API's
    machine-readable code (None: derived from the status); `headers` are added to the
    envelope's response (a 405's `Allow`)."""

    def __init__(
        self,
        status: int,
        message: str,
        code: str | None = None,
        headers: Headers | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.headers = headers


class BodyTooLarge(HttpError):
    def __init__(self, limit: int) -> None:
        super().__init__(413, f"Request body too large (max {limit} bytes)")


class Request(ABC):
    """One HTTP request or WebSocket upgrade, and the way to answer it. `params` holds the
    path's captured segments (shared between requests: read them, never change them)."""

    __slots__ = ("_query", "_query_string", "max_body", "method", "params", "path")

    def __init__(self, method: str, path: str, query_string: str, max_body: int) -> None:
        self.method = method
        self.path = path
        self.params = NO_PARAMS
        self.max_body = max_body
        self._query_string = query_string
        self._query: dict[str, str] | None = None

    @abstractmethod
    def header(self, name: str) -> str | None:
        """The value of a header (`name` in lower case), or None."""

    @abstractmethod
    async def body(self) -> bytes:
        """The whole body; BodyTooLarge past `max_body` (by header, then by count)."""

    @abstractmethod
    async def disconnected(self) -> None:
        """Returns when the client has closed the connection."""

    @abstractmethod
    async def respond(self, response: Response, cors: bool = True) -> None:
        """Sends the answer, with the server's CORS header unless `cors` is False."""

    @abstractmethod
    def stream(self) -> Stream:
        """Answers with a response sent in pieces instead."""

    @property
    def query(self) -> dict[str, str]:
        if self._query is None:
            self._query = dict(parse_qsl(self._query_string, keep_blank_values=True))
        return self._query

    def declared_too_large(self) -> bool:
        """Whether Content-Length alone already says the body is over the limit."""
        length = self.header("content-length")
        return length is not None and length.isdigit() and int(length) > self.max_body


@dataclass(slots=True)
class Response:
    status: int
    body: bytes
    content_type: str = JSON  # "" for a response that has no content (a 204)
    headers: Headers = field(default_factory=list)

    def without_body(self) -> Response:
        """The same response for a HEAD request."""
        return Response(self.status, b"", self.content_type, self.headers)


def ok(body: bytes) -> Response:
    return Response(200, body)


OK_TRUE = Response(200, b'{"ok":true}')


class Stream(ABC):
    """An HTTP response sent in pieces (SSE). `open` sends the status and headers."""

    opened = False

    @abstractmethod
    async def open(self, status: int, headers: Headers) -> None: ...

    @abstractmethod
    async def write(self, chunk: bytes) -> None: ...

    @abstractmethod
    async def end(self) -> None: ...


class Socket(ABC):
    """An accepted WebSocket. Messages out are always text frames."""

    @abstractmethod
    async def receive(self) -> bytes | None:
        """The next message's payload (text as UTF-8), or None once the peer has closed."""

    @abstractmethod
    async def send(self, text: bytes) -> None:
        """Sends one text message (`text` is UTF-8). OSError once the peer is gone."""

    async def send_all(self, texts: list[bytes]) -> None:
        """Sends each as its own message, in order."""
        for text in texts:
            await self.send(text)

    @abstractmethod
    async def close(self, code: int, reason: str) -> None:
        """Sends a close frame where the interface allows a code and reason (ASGI);
        RSGI closes without them."""


class Upgrade(ABC):
    """A WebSocket handshake waiting for the server's answer."""

    @abstractmethod
    async def accept(self) -> Socket: ...

    @abstractmethod
    async def reject(self, response: Response) -> None:
        """Refuses with an HTTP response (RSGI sends the status only, without a body)."""

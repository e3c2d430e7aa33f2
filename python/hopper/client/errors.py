"""The errors the client raises, each carrying the server's message.

Every class derives from `ClientError` (and so from `hopper.HopperError`) and, where one
fits, from the error the embedded engine raises for the same fault, so one `except
hopper.NotFoundError` serves both `hopper.Engine` and `hopper.Client`:

| server answer | raised | also an instance of |
|---|---|---|
| 400 | `BadRequestError` | `hopper.InvalidInputError` |
| 400 `Job not found or not active` | `JobNotActiveError` | `hopper.InvalidStateError` |
| 400 `Invalid lock token for this job` | `LockTokenError` | `hopper.LockError` |
| 401, WS `Invalid token`, WS upgrade refused | `AuthError` | — |
| 404 | `JobNotFoundError` | `hopper.NotFoundError` |
| 413 | `PayloadTooLargeError` | `hopper.InvalidInputError` |
| 429 | `RateLimitedError` | `hopper.UnavailableError` |
| 503 | `ServiceUnavailableError` | `hopper.UnavailableError` |
| other status, unreadable answer | `ServerError` | — |
| no connection, or it dropped before the answer | `ConnectionLostError` | `UnavailableError` |
| no answer within the client's timeout | `RequestTimeoutError` | `UnavailableError` |

`str(error)` and `error.message` are the server's `error` text; `error.status` is the HTTP
status (None for WebSocket replies and transport failures).
"""

from __future__ import annotations

from hopper.errors import (
    HopperError,
    InvalidInputError,
    InvalidStateError,
    LockError,
    NotFoundError,
    UnavailableError,
)

NOT_ACTIVE = "Job not found or not active"
# The WebSocket's wording (bunqueue's command table): the job id follows.
NOT_PROCESSING = "Job not found or not in processing state: "
BAD_TOKEN = "Invalid lock token"
EXPIRED_TOKEN = "Invalid or expired lock token"


class ClientError(HopperError):
    """Base of every error the client raises."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status

    def __reduce__(self) -> tuple[type[ClientError], tuple[str, int | None]]:
        return type(self), (self.message, self.status)


class BadRequestError(InvalidInputError, ClientError):
    """400: the server refused the request's content (validation)."""


class JobNotActiveError(InvalidStateError, ClientError):
    """400 `Job not found or not active`: ack/fail of a job that is not leased (any
    more): it finished, stalled, or was released."""


class LockTokenError(LockError, ClientError):
    """400 `Invalid lock token for this job`: the job's lease belongs to someone else."""


class AuthError(ClientError):
    """401 / `Invalid token`: a missing or wrong bearer token."""


class JobNotFoundError(NotFoundError, ClientError):
    """404: unknown job id (or unknown endpoint)."""


class PayloadTooLargeError(InvalidInputError, ClientError):
    """413: the request body is over the server's limit."""


class RateLimitedError(UnavailableError, ClientError):
    """429: the server's per-IP rate limit; try again later."""


class ServiceUnavailableError(UnavailableError, ClientError):
    """503: the server cannot serve now (e.g. its storage failed)."""


class ServerError(ClientError):
    """Any other error status (500, ...) or an answer that is not the API's JSON."""


class ConnectionLostError(UnavailableError, ClientError):
    """The connection could not be made, or dropped before the answer came. For the
    WebSocket channel: every command in flight at the drop fails with this; the next
    command reconnects."""


class RequestTimeoutError(UnavailableError, ClientError):
    """No answer within the client's timeout (plus the long-poll time for pulls)."""


def error_for(status: int | None, message: str) -> ClientError:
    """The error for an `{ok:false, error}` answer; `status` None (WebSocket) or 200 (a
    server that answers errors with 200) classifies by the message alone."""
    if status == 400 or status is None or status == 200:
        if message == NOT_ACTIVE or message.startswith(NOT_PROCESSING):
            return JobNotActiveError(message, status)
        if message.startswith((BAD_TOKEN, EXPIRED_TOKEN)):
            return LockTokenError(message, status)
        if status == 400:
            return BadRequestError(message, status)
        if message in ("Unauthorized", "Invalid token"):
            return AuthError(message, status)
        if message == "Job not found":
            return JobNotFoundError(message, status)
        if message == "Rate limit exceeded":
            return RateLimitedError(message, status)
        return BadRequestError(message, status)
    if status == 401 or status == 403:
        return AuthError(message, status)
    if status == 404:
        return JobNotFoundError(message, status)
    if status == 413:
        return PayloadTooLargeError(message, status)
    if status == 429:
        return RateLimitedError(message, status)
    if status == 503:
        return ServiceUnavailableError(message, status)
    return ServerError(message, status)


__all__ = [
    "AuthError",
    "BadRequestError",
    "ClientError",
    "ConnectionLostError",
    "JobNotActiveError",
    "JobNotFoundError",
    "LockTokenError",
    "PayloadTooLargeError",
    "RateLimitedError",
    "RequestTimeoutError",
    "ServerError",
    "ServiceUnavailableError",
    "error_for",
]

"""The job server's client side: `Client` / `AsyncClient` (HTTP), `WsChannel` (pipelined
WebSocket commands), `Producer` (batching pushes), `Worker` (runs a handler on a queue,
from a server or an embedded `hopper.Engine`). See docs/client.md."""

from hopper.client.errors import (
    AuthError,
    BadRequestError,
    ClientError,
    ConnectionLostError,
    JobNotActiveError,
    JobNotFoundError,
    LockTokenError,
    PayloadTooLargeError,
    RateLimitedError,
    RequestTimeoutError,
    ServerError,
    ServiceUnavailableError,
)
from hopper.client.http import AsyncClient, Client
from hopper.client.worker import ActiveJob, Worker
from hopper.client.ws import Producer, WsChannel

__all__ = [
    "ActiveJob",
    "AsyncClient",
    "AuthError",
    "BadRequestError",
    "Client",
    "ClientError",
    "ConnectionLostError",
    "JobNotActiveError",
    "JobNotFoundError",
    "LockTokenError",
    "PayloadTooLargeError",
    "Producer",
    "RateLimitedError",
    "RequestTimeoutError",
    "ServerError",
    "ServiceUnavailableError",
    "Worker",
    "WsChannel",
]

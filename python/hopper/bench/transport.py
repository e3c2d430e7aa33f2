"""What the scenarios need from a connection to a server: push, pull, ack, over the seed-001
job server API only (so the same run works against the reference server).

Each transport serves `lanes` concurrent callers; lane `i` always uses the same connection
(a worker acks on the socket it pulled from)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

# The job payload of every pushed job (the same ~90 bytes as bench/server.py).
PAYLOAD: dict[str, Any] = {
    "to": "user@example.com",
    "subject": "Welcome aboard!!!",
    "template": "welcome-v2-2026",
    "n": 1,
}


class RequestFailed(Exception):
    """The server answered `{ok:false}`, a non-2xx status, or the connection failed."""


class ConnectionLost(RequestFailed):
    """A connection the run depends on is gone (a closed WebSocket): the run stops."""


@dataclass
class Pulled:
    id: str
    token: str | None
    data: Any


class Transport(Protocol):
    name: str

    async def open(self, lanes: int) -> None: ...

    async def close(self) -> None: ...

    async def push(self, lane: int, queue: str, data: Any) -> str:
        """Pushes one job; returns its id."""
        ...

    async def pull(self, lane: int, queue: str, timeout_ms: int) -> Pulled | None:
        """Pulls one job (long-polls up to `timeout_ms`); None when there was none."""
        ...

    async def ack(self, lane: int, job: Pulled) -> None: ...


def check_ok(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise RequestFailed(f"unexpected reply: {str(body)[:200]}")
    if body.get("ok") is not True:
        raise RequestFailed(str(body.get("error") or body)[:300])
    return body


def pulled(body: dict[str, Any]) -> Pulled | None:
    job = body.get("job")
    if not isinstance(job, dict):
        return None
    token = body.get("token")
    return Pulled(str(job["id"]), token if isinstance(token, str) else None, job.get("data"))

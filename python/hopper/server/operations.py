"""The job server's HTTP operations: request bytes in, the reply body (`{"ok":true,...}`
JSON bytes) out, latency recorded. (WebSocket and TCP commands run in the engine's
protocol session instead: `hopper._engine.ProtocolSession`.) Failures are the engine's
typed errors."""

from __future__ import annotations

from time import perf_counter

from hopper.errors import NotFoundError
from hopper.server.prometheus import Metrics
from hopper.server.server_engine import ServerEngine

MAX_POLL_MS = 60_000
TIMEOUT_RANGE = f"timeout must be an integer between 0 and {MAX_POLL_MS} (ms)"
NO_JOB = b'{"ok":true,"job":null,"token":null}'
OK = b'{"ok":true}'


def pulled(got: tuple[bytes, str] | None) -> bytes:
    if got is None:
        return NO_JOB
    job, token = got
    return b'{"ok":true,"job":' + job + b',"token":"' + token.encode() + b'"}'


class JobOperations:
    def __init__(self, engine: ServerEngine, metrics: Metrics) -> None:
        self.engine = engine
        self.metrics = metrics

    def push(self, queue: str, body: bytes) -> bytes:
        t0 = perf_counter()
        job_id = self.engine.push_body_json(queue, body)
        self.metrics.observe_push(perf_counter() - t0)
        return b'{"ok":true,"id":' + job_id + b"}"

    def push_many(self, queue: str, body: bytes) -> bytes:
        t0 = perf_counter()
        ids = self.engine.push_many_body_json(queue, body)
        self.metrics.observe_push(perf_counter() - t0)
        return b'{"ok":true,"ids":' + ids + b"}"

    def pull(self, queue: str, owner: int = 0) -> bytes | None:
        """The reply for the next job leased to `owner`; None when the queue has none."""
        t0 = perf_counter()
        got = self.engine.pull_json(queue, owner)
        self.metrics.observe_pull(perf_counter() - t0)
        return None if got is None else pulled(got)

    async def pull_wait(self, queue: str, timeout_ms: int, owner: int) -> bytes | None:
        """`pull`, waiting up to `timeout_ms` for a job (a long poll)."""
        got = await self.engine.pull_json_async(queue, timeout_ms / 1000, owner)
        return None if got is None else pulled(got)

    def ack(self, job_id: str, body: bytes) -> bytes:
        t0 = perf_counter()
        self.engine.ack_body(job_id, body)
        self.metrics.observe_ack(perf_counter() - t0)
        return OK

    def fail(self, job_id: str, body: bytes) -> bytes:
        self.engine.fail_body(job_id, body)
        return OK

    def get(self, job_id: str) -> bytes:
        job = self.engine.get_json(job_id)
        if job is None:
            raise NotFoundError("Job not found")
        return b'{"ok":true,"job":' + job + b"}"

    def cancel(self, job_id: str) -> bytes:
        try:
            self.engine.cancel_pending(job_id)
        except NotFoundError:
            raise NotFoundError("Job not found") from None
        return OK

    def release(self, owner: int) -> None:
        """A connection ended: the jobs it leased go back to waiting."""
        self.engine.release_owner(owner)

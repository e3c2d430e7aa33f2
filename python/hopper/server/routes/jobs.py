"""Job endpoints: push (and bulk push), pull with long poll, get, cancel, ack, fail.
Each is one job operation (`operations.py`) on the request bytes."""

from __future__ import annotations

import asyncio

from hopper.errors import InvalidInputError
from hopper.server.http import Request
from hopper.server.jobserver_schemas import ok_with, ref
from hopper.server.operations import MAX_POLL_MS, NO_JOB, TIMEOUT_RANGE, JobOperations
from hopper.server.router import Doc, Param, Router
from hopper.server.state import ServerState


def poll_timeout_ms(raw: str | None) -> int:
    """The `timeout` query parameter of a pull: whole ms in 0..60000."""
    if raw is None or raw == "":
        return 0
    # isascii: str.isdigit() also accepts digits int() refuses, such as '²'.
    if not (raw.isascii() and raw.isdigit()) or int(raw) > MAX_POLL_MS:
        raise InvalidInputError(TIMEOUT_RANGE)
    return int(raw)


def register(router: Router, state: ServerState, ops: JobOperations) -> None:
    async def push(req: Request) -> bytes:
        return ops.push(req.params["queue"], await req.body())

    async def push_bulk(req: Request) -> bytes:
        return ops.push_many(req.params["queue"], await req.body())

    async def pull(req: Request) -> bytes:
        queue = req.params["queue"]
        timeout = poll_timeout_ms(req.query.get("timeout"))
        reply = ops.pull(queue)
        if reply is None and timeout:
            reply = await long_poll(req, queue, timeout)
        return reply or NO_JOB

    async def long_poll(req: Request, queue: str, timeout_ms: int) -> bytes | None:
        """Waits for a job while watching the connection: a client that has gone away
        must not be handed a lease (the job would sit active until it stalls). The poll
        leases under its own owner id, so a job taken just as the client left goes
        straight back to waiting."""
        owner = next(state.owner_ids)
        poll = asyncio.ensure_future(ops.pull_wait(queue, timeout_ms, owner))
        gone = asyncio.ensure_future(req.disconnected())
        try:
            await asyncio.wait((poll, gone), return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (poll, gone):
                if not task.done():
                    task.cancel()
        got = poll.result() if poll.done() and not poll.cancelled() else None
        if gone.done() and not gone.cancelled():
            if got is not None:
                ops.release(owner)
            return None
        return got

    async def get(req: Request) -> bytes:
        return ops.get(req.params["id"])

    async def cancel(req: Request) -> bytes:
        return ops.cancel(req.params["id"])

    async def ack(req: Request) -> bytes:
        return ops.ack(req.params["id"], await req.body())

    async def fail(req: Request) -> bytes:
        return ops.fail(req.params["id"], await req.body())

    tag, errors = "Job server", (400, 401, 404, 413, 429, 503)
    ack_body = {"type": "object", "properties": {"result": {}, "token": {"type": "string"}}}
    fail_body = {
        "type": "object",
        "properties": {
            "error": {"type": "string"},
            "token": {"type": "string"},
            # The reference's stack lines: accepted, not stored (the error is).
            "stack": {"type": "array", "items": {"type": "string"}},
        },
    }
    router.add(
        "POST",
        "/queues/:queue/jobs",
        push,
        doc=Doc(
            "Push a job", tag, ok_with(id={"type": "string"}), body=ref("PushBody"), errors=errors
        ),
    )
    router.add(
        "POST",
        "/queues/:queue/jobs/bulk",
        push_bulk,
        doc=Doc(
            "Push many jobs, all or none (extension)",
            tag,
            ok_with(ids={"type": "array", "items": {"type": "string"}}),
            body={
                "oneOf": [
                    {"type": "array", "items": ref("PushBody")},
                    {
                        "type": "object",
                        "required": ["jobs"],
                        "properties": {"jobs": {"type": "array", "items": ref("PushBody")}},
                    },
                ]
            },
            body_required=True,
            errors=errors,
        ),
    )
    router.add(
        "GET",
        "/queues/:queue/jobs",
        pull,
        doc=Doc(
            "Pull (lease) the next job, waiting up to timeout ms",
            tag,
            ref("Pulled"),
            query=(Param("timeout", {"type": "integer", "minimum": 0, "maximum": MAX_POLL_MS}),),
            errors=errors,
        ),
    )
    router.add(
        "GET",
        "/jobs/:id",
        get,
        doc=Doc("Get a job", tag, ok_with(job=ref("ServerJob")), errors=errors),
    )
    router.add(
        "DELETE",
        "/jobs/:id",
        cancel,
        doc=Doc("Cancel a job that has not started", tag, ok_with(), errors=errors),
    )
    router.add(
        "POST",
        "/jobs/:id/ack",
        ack,
        doc=Doc("Complete an active job", tag, ok_with(), body=ack_body, errors=errors),
    )
    router.add(
        "POST",
        "/jobs/:id/fail",
        fail,
        doc=Doc("Fail an active job's attempt", tag, ok_with(), body=fail_body, errors=errors),
    )

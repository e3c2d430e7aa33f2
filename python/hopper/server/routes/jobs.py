"""Job endpoints: push (and bulk push), pull with long poll, get, cancel, ack, fail.
Each is one engine call on the request bytes; the engine returns ready JSON."""

from __future__ import annotations

import asyncio
from time import perf_counter
from typing import TYPE_CHECKING

import orjson

from hopper.errors import InvalidStateError, NotFoundError
from hopper.server.http import OK_TRUE, HttpError, Request, Response, ok
from hopper.server.jobserver_schemas import ok_with, ref
from hopper.server.router import Doc, Param, Router

if TYPE_CHECKING:
    from hopper.server.app import ServerState

MAX_POLL_MS = 60_000
NO_JOB = b'{"ok":true,"job":null,"token":null}'
NOT_ACTIVE = "Job not found or not active"


def poll_timeout_ms(raw: str | None) -> int:
    """The `timeout` query parameter of a pull: whole ms in 0..60000."""
    if raw is None or raw == "":
        return 0
    # isascii: str.isdigit() also accepts digits int() refuses, such as '²'.
    if not (raw.isascii() and raw.isdigit()) or int(raw) > MAX_POLL_MS:
        raise HttpError(400, f"timeout must be an integer between 0 and {MAX_POLL_MS} (ms)")
    return int(raw)


def pulled_body(got: tuple[bytes, str] | None) -> bytes:
    if got is None:
        return NO_JOB
    job, token = got
    return b'{"ok":true,"job":' + job + b',"token":"' + token.encode() + b'"}'


async def disconnected(req: Request) -> None:
    """Returns when the client closes the connection."""
    while (await req.receive())["type"] != "http.disconnect":
        pass


def register(router: Router, state: ServerState) -> None:
    engine = state.engine
    metrics = state.metrics

    async def push(req: Request) -> Response:
        body = await req.body()
        t0 = perf_counter()
        job_id, _duplicate = engine.push_body(req.params["queue"], body)
        metrics.observe_push(perf_counter() - t0)
        return ok(b'{"ok":true,"id":' + orjson.dumps(job_id) + b"}")

    async def push_bulk(req: Request) -> Response:
        body = await req.body()
        t0 = perf_counter()
        ids = engine.push_many_body_json(req.params["queue"], body)
        metrics.observe_push(perf_counter() - t0)
        return ok(b'{"ok":true,"ids":' + ids + b"}")

    async def pull(req: Request) -> Response:
        queue = req.params["queue"]
        timeout = poll_timeout_ms(req.query.get("timeout"))
        t0 = perf_counter()
        got = engine.pull_json(queue)
        metrics.observe_pull(perf_counter() - t0)
        if got is None and timeout:
            got = await long_poll(req, queue, timeout)
        return ok(pulled_body(got))

    async def long_poll(req: Request, queue: str, timeout_ms: int) -> tuple[bytes, str] | None:
        """Waits for a job while watching the connection: a client that has gone away
        must not be handed a lease (the job would sit active until it stalls). The poll
        leases under its own owner id, so a job taken just as the client left goes
        straight back to waiting."""
        owner = next(state.ws_ids)
        poll = asyncio.ensure_future(engine.pull_json_async(queue, timeout_ms / 1000, owner))
        gone = asyncio.ensure_future(disconnected(req))
        try:
            await asyncio.wait((poll, gone), return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (poll, gone):
                if not task.done():
                    task.cancel()
        got = poll.result() if poll.done() and not poll.cancelled() else None
        if gone.done() and not gone.cancelled():
            if got is not None:
                engine.release_owner(owner)
            return None
        return got

    async def get(req: Request) -> Response:
        job = engine.get_json(req.params["id"])
        if job is None:
            raise HttpError(404, "Job not found")
        return ok(b'{"ok":true,"job":' + job + b"}")

    async def cancel(req: Request) -> Response:
        try:
            engine.cancel_pending(req.params["id"])
        except NotFoundError:
            raise HttpError(404, "Job not found") from None
        return OK_TRUE

    async def ack(req: Request) -> Response:
        body = await req.body()
        t0 = perf_counter()
        try:
            engine.ack_body(req.params["id"], body)
        except InvalidStateError:
            raise HttpError(400, NOT_ACTIVE) from None
        metrics.observe_ack(perf_counter() - t0)
        return OK_TRUE

    async def fail(req: Request) -> Response:
        body = await req.body()
        try:
            engine.fail_body(req.params["id"], body)
        except InvalidStateError:
            raise HttpError(400, NOT_ACTIVE) from None
        return OK_TRUE

    tag, errors = "Job server", (400, 401, 404, 413, 429, 503)
    ack_body = {"type": "object", "properties": {"result": {}, "token": {"type": "string"}}}
    fail_body = {
        "type": "object",
        "properties": {"error": {"type": "string"}, "token": {"type": "string"}},
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

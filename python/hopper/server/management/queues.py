"""Queue routes: list, detail, pause/resume (a queue or one job name), drain, clean,
retry all, promote all, obliterate."""

from __future__ import annotations

import unicodedata
from typing import TYPE_CHECKING, Any

from hopper.server.http import Request, Response
from hopper.server.management import shapes
from hopper.server.management.api import (
    MAX_SAFE_INT,
    bad_request,
    data,
    json_body,
    state_param,
)
from hopper.server.management.schemas import INT, STATE, data_of, ref
from hopper.server.router import Doc, Param

if TYPE_CHECKING:
    from hopper.server.management.api import Management

ERRORS = (400, 401, 403, 404, 429, 503)
MAX_JOB_NAME_BYTES = 256
JOB_NAME_BODY = {"type": "object", "properties": {"jobName": {"type": "string"}}}


def _flag(key: str, value: Any) -> dict[str, Any]:
    return data_of({"type": "object", "required": [key], "properties": {key: value}})


def register(api: Management) -> None:
    engine = api.engine

    async def list_queues(_req: Request) -> Response:
        return data([shapes.queue_summary(engine, q) for q in api.queues()])

    async def detail(req: Request) -> Response:
        return data(shapes.queue_detail(engine, api.existing_queue(req)))

    async def job_name(req: Request) -> str | None:
        body = await json_body(req)
        if body is None:
            return None
        if not isinstance(body, dict):
            raise bad_request("body must be an object: {jobName?}")
        name = body.get("jobName")
        if name is not None and not isinstance(name, str):
            raise bad_request("jobName must be a string")
        # No job can have a longer name or control characters (the engine's name rule).
        if name and (
            len(name.encode()) > MAX_JOB_NAME_BYTES
            or any(unicodedata.category(c) == "Cc" for c in name)
        ):
            raise bad_request(
                f"jobName must be at most {MAX_JOB_NAME_BYTES} bytes without control characters"
            )
        return None if name in (None, "", shapes.ALL_NAMES) else name

    async def pause(req: Request) -> Response:
        queue = api.queue(req)
        name = await job_name(req)
        engine.pause(queue, name)
        return data({"paused": name or shapes.ALL_NAMES})

    async def resume(req: Request) -> Response:
        queue = api.queue(req)
        name = await job_name(req)
        engine.resume(queue, name)
        return data({"resumed": name or shapes.ALL_NAMES})

    async def drain(req: Request) -> Response:
        engine.drain(api.existing_queue(req))
        return data({"drained": True})

    async def state_body(req: Request, allowed: tuple[str, ...]) -> dict[str, Any]:
        body = await json_body(req)
        if not isinstance(body, dict):
            raise bad_request(f'body must be an object with "state" ({", ".join(allowed)})')
        state_param(body.get("state"), allowed)
        return body

    def count_field(body: dict[str, Any], name: str, message: str) -> int:
        """A non-negative integer field (at most 2^53 - 1); absent: 0."""
        value = body.get(name, 0)
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_SAFE_INT:
            raise bad_request(message)
        return value

    async def clean(req: Request) -> Response:
        queue = api.existing_queue(req)
        allowed = tuple(s for s in shapes.STATES if s != "active")
        body = await state_body(req, allowed)
        if "grace" not in body:
            raise bad_request('Valid JSON with "state" and "grace" fields is required')
        grace = count_field(body, "grace", "grace must be a non-negative integer (ms)")
        limit = count_field(body, "limit", "limit must be a non-negative integer")
        removed = engine.clean(queue, body["state"], grace, limit)
        return data({"removed": len(removed)})

    async def retry(req: Request) -> Response:
        queue = api.existing_queue(req)
        body = await state_body(req, ("failed", "completed"))
        n = engine.retry_all(queue, body["state"])
        return data({"retried": n})

    async def promote(req: Request) -> Response:
        n = engine.promote_all(api.existing_queue(req))
        return data({"promoted": n})

    async def obliterate(req: Request) -> Response:
        queue = api.existing_queue(req)
        force = req.query.get("force", "false")
        if force not in ("true", "false"):
            raise bad_request("force must be true or false")
        engine.obliterate(queue, force=force == "true")
        return data({"obliterated": True})

    async def failures(req: Request) -> Response:
        groups = engine.failure_groups(api.existing_queue(req))
        return data([{"reason": r, "count": n, "latestJobId": j} for r, n, j in groups])

    async def retry_failures(req: Request) -> Response:
        queue = api.existing_queue(req)
        body = await json_body(req)
        if not isinstance(body, dict) or not isinstance(body.get("reason"), str):
            raise bad_request('body must be an object with "reason" (a string)')
        n = engine.retry_failures(queue, body["reason"])
        return data({"retried": n})

    tag = "Queues"
    api.add(
        "GET",
        "/queues/:name/failures",
        failures,
        Doc(
            "Failed jobs grouped by error message, largest group first (extension)",
            tag,
            data_of(
                {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["reason", "count", "latestJobId"],
                        "properties": {
                            "reason": {"type": "string"},
                            "count": INT,
                            "latestJobId": {"type": "string"},
                        },
                    },
                }
            ),
            errors=ERRORS,
        ),
    )
    api.add(
        "POST",
        "/queues/:name/failures/retry",
        retry_failures,
        Doc(
            "Retry the failed jobs with one error message (extension)",
            tag,
            _flag("retried", INT),
            body={
                "type": "object",
                "required": ["reason"],
                "properties": {"reason": {"type": "string"}},
            },
            body_required=True,
            errors=ERRORS,
        ),
    )
    api.add(
        "GET",
        "/queues",
        list_queues,
        Doc(
            "List queues",
            tag,
            data_of({"type": "array", "items": ref("QueueSummary")}),
            errors=(401, 429),
        ),
    )
    api.add(
        "GET",
        "/queues/:name",
        detail,
        Doc(
            "Queue detail: counts per state and paused job names",
            tag,
            data_of(ref("QueueDetail")),
            errors=ERRORS,
        ),
    )
    for path, handler, key, summary in (
        ("pause", pause, "paused", "Pause a queue, or one job name in it"),
        ("resume", resume, "resumed", "Resume a queue, or one job name in it"),
    ):
        api.add(
            "POST",
            f"/queues/:name/{path}",
            handler,
            Doc(
                summary,
                tag,
                _flag(key, {"type": "string"}),
                body=JOB_NAME_BODY,
                errors=ERRORS,
                description='Omit jobName (or send "__all__") for the whole queue.',
            ),
        )
    api.add(
        "POST",
        "/queues/:name/drain",
        drain,
        Doc(
            "Remove every waiting and delayed job",
            tag,
            _flag("drained", {"type": "boolean"}),
            errors=ERRORS,
        ),
    )
    api.add(
        "POST",
        "/queues/:name/clean",
        clean,
        Doc(
            "Remove jobs in a state older than a grace period (ms)",
            tag,
            _flag("removed", INT),
            body={
                "type": "object",
                "required": ["state", "grace"],
                "properties": {
                    "state": STATE,
                    "grace": {"type": "integer", "minimum": 0, "maximum": MAX_SAFE_INT},
                    "limit": {
                        "type": "integer",
                        "minimum": 0,
                        "maximum": MAX_SAFE_INT,
                        "description": "at most this many, oldest first; 0: all (extension)",
                    },
                },
            },
            body_required=True,
            errors=ERRORS,
        ),
    )
    api.add(
        "POST",
        "/queues/:name/retry",
        retry,
        Doc(
            "Retry every failed or completed job",
            tag,
            _flag("retried", INT),
            body={
                "type": "object",
                "required": ["state"],
                "properties": {"state": {"type": "string", "enum": ["failed", "completed"]}},
            },
            body_required=True,
            errors=ERRORS,
        ),
    )
    api.add(
        "POST",
        "/queues/:name/promote",
        promote,
        Doc("Make every delayed job waiting", tag, _flag("promoted", INT), errors=ERRORS),
    )
    api.add(
        "DELETE",
        "/queues/:name",
        obliterate,
        Doc(
            "Obliterate a queue and all its jobs (refused while jobs are active unless force)",
            tag,
            _flag("obliterated", {"type": "boolean"}),
            query=(Param("force", {"type": "string", "enum": ["true", "false"]}),),
            errors=ERRORS,
        ),
    )

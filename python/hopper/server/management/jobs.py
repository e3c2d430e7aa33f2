"""Job routes: list by state with pagination, add, detail, children (flow), retry,
promote, cancel, edit, remove. A job is addressed under its own queue: the same id under
another queue's path is NOT_FOUND, which also keeps the allow-list airtight."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson

from hopper.server.http import Request, Response
from hopper.server.management import shapes
from hopper.server.management.api import (
    bad_request,
    data,
    int_param,
    json_body,
    not_found,
    page,
    state_param,
)
from hopper.server.management.schemas import STATE, data_of, page_of, ref
from hopper.server.router import Doc, Param

if TYPE_CHECKING:
    from hopper.server.management.api import Management

MAX_PAGE = 1000
DEFAULT_END = 100
ERRORS = (400, 401, 403, 404, 429, 503)
# The reference's `opts` names → the job server's push body.
PLAIN_OPTS = {
    "priority": "priority",
    "delay": "delay",
    "attempts": "maxAttempts",
    "lifo": "lifo",
    "jobId": "jobId",
    "timeout": "timeout",
    "ttl": "ttl",
    "removeOnComplete": "removeOnComplete",
    "removeOnFail": "removeOnFail",
    "tags": "tags",
    "durable": "durable",
}


def push_body(name: str, payload: Any, opts: dict[str, Any]) -> dict[str, Any]:
    """The job server push body for an `{name, data, opts}` add."""
    body: dict[str, Any] = {"name": name, "data": payload}
    for key, value in opts.items():
        if key in PLAIN_OPTS:
            body[PLAIN_OPTS[key]] = value
        elif key == "backoff":
            body["backoff"] = value.get("delay") if isinstance(value, dict) else value
        elif key == "repeat" and isinstance(value, dict):
            body["repeat"] = {
                k: v
                for k, v in (
                    ("every", value.get("every")),
                    ("pattern", value.get("cron", value.get("pattern"))),
                    ("limit", value.get("limit")),
                )
                if v is not None
            }
        elif key == "deduplication" and isinstance(value, dict):
            body["uniqueKey"] = value.get("key", value.get("id"))
        elif key == "group" and isinstance(value, dict):
            body["groupId"] = value.get("id")
        else:
            raise bad_request(f"unknown or malformed option: opts.{key}")
    return body


def register(api: Management) -> None:
    engine = api.engine

    def job_in(req: Request) -> tuple[str, dict[str, Any]]:
        queue = api.queue(req)
        job_id = req.params["id"]
        j = engine.get(job_id)
        if j is None or j["queue"] != queue:
            raise not_found(f"Job {job_id} not found")
        return job_id, j

    async def list_jobs(req: Request) -> Response:
        queue = api.queue(req)
        state = state_param(req.query.get("state", "waiting"), shapes.STATES)
        start = max(0, int_param(req, "start", 0))
        # As the reference: 0 means the default; a negative end is before any start,
        # so the page is empty.
        end = int_param(req, "end", DEFAULT_END) or DEFAULT_END
        end = max(end, start)
        if end - start > MAX_PAGE:
            raise bad_request(f"Page size too large (max {MAX_PAGE})")
        if end == start:
            total = engine.counts(queue)[state]
            return page([], total, start, end)
        jobs, total = engine.list_jobs(queue, state, start, end - 1)  # type: ignore[arg-type]
        return page([shapes.job(engine, j) for j in jobs], total, start, end)

    async def add(req: Request) -> Response:
        queue = api.queue(req)
        body = await json_body(req)
        if not isinstance(body, dict) or not isinstance(body.get("name"), str) or not body["name"]:
            raise bad_request('Valid JSON with a "name" field is required')
        opts = body.get("opts", {})
        if not isinstance(opts, dict):
            raise bad_request("opts must be an object")
        job_id, _duplicate = engine.push_body(
            queue, orjson.dumps(push_body(body["name"], body.get("data", {}), opts))
        )
        j = engine.get(job_id)
        if j is None:  # removed at once (removeOnComplete cannot apply yet; a TTL of 1 ms)
            raise not_found(f"Job {job_id} not found")
        return data(shapes.job(engine, j), status=201)

    async def detail(req: Request) -> Response:
        job_id, j = job_in(req)
        shaped = shapes.job(engine, j)
        # The reference's `logs`: the job's log lines, oldest first (lists leave it []).
        shaped["logs"] = [entry.message for entry in engine.logs(job_id)[0]]
        return data(shaped)

    async def logs(req: Request) -> Response:
        job_id, _ = job_in(req)
        start = max(0, int_param(req, "start", 0))
        end = int_param(req, "end", MAX_PAGE)
        if end <= 0:
            end = MAX_PAGE
        end = max(end, start)
        if end - start > MAX_PAGE:
            raise bad_request(f"Page size too large (max {MAX_PAGE})")
        if end == start:
            return page([], engine.logs(job_id, 0, -1)[1], start, end)
        entries, total = engine.logs(job_id, start, end - 1)
        return page([shapes.log_entry(e) for e in entries], total, start, end)

    async def children(req: Request) -> Response:
        _, j = job_in(req)
        kids = [engine.get(d) for d in j["dependsOn"]]
        return data([shapes.job(engine, k) for k in kids if k is not None])

    def action(verb: str, allowed: tuple[str, ...], apply: Any, key: str) -> Any:
        async def handler(req: Request) -> Response:
            job_id, j = job_in(req)
            if j["state"] not in allowed:
                raise bad_request(f'Cannot {verb} job in state "{j["state"]}"')
            apply(job_id)
            return data({key: True})

        return handler

    async def edit(req: Request) -> Response:
        job_id, j = job_in(req)
        if j["state"] == "active":
            raise bad_request("Cannot edit an active job")
        body = await json_body(req)
        if not isinstance(body, dict):
            raise bad_request("body must be a JSON object")
        opts = body.get("opts") or {}
        if not isinstance(opts, dict):
            raise bad_request("opts must be an object")
        priority = opts.get("priority")
        if priority is not None and (not isinstance(priority, int) or isinstance(priority, bool)):
            raise bad_request("opts.priority must be an integer")
        if body.get("data") is None and priority is None:
            raise bad_request("No valid fields to update")
        engine.update(job_id, data=body.get("data"), priority=priority)
        updated = engine.get(job_id)
        assert updated is not None
        return data(shapes.job(engine, updated))

    async def remove(req: Request) -> Response:
        job_id, _ = job_in(req)
        engine.remove(job_id)
        return data({"removed": True})

    tag = "Jobs"
    job = ref("Job")
    api.add(
        "GET",
        "/queues/:name/jobs",
        list_jobs,
        Doc(
            "List jobs in a state; end is exclusive, at most 1000 per page",
            tag,
            page_of(job),
            query=(
                Param("state", STATE, "default waiting"),
                Param("start", {"type": "integer"}, "offset, default 0"),
                Param("end", {"type": "integer"}, "exclusive end, default 100"),
            ),
            errors=ERRORS,
        ),
    )
    api.add(
        "POST",
        "/queues/:name/jobs",
        add,
        Doc(
            "Add a job",
            tag,
            data_of(job),
            status=201,
            body=ref("JobInput"),
            body_required=True,
            errors=ERRORS,
        ),
    )
    api.add(
        "GET", "/queues/:name/jobs/:id", detail, Doc("Job detail", tag, data_of(job), errors=ERRORS)
    )
    api.add(
        "GET",
        "/queues/:name/jobs/:id/children",
        children,
        Doc(
            "The jobs this job depends on (its flow children)",
            tag,
            data_of({"type": "array", "items": job}),
            errors=ERRORS,
        ),
    )
    api.add(
        "GET",
        "/queues/:name/jobs/:id/logs",
        logs,
        Doc(
            "A job's log lines, oldest first; end is exclusive, at most 1000 per page (extension)",
            tag,
            page_of(ref("LogEntry")),
            query=(
                Param("start", {"type": "integer"}, "offset, default 0"),
                Param("end", {"type": "integer"}, "exclusive end, default 1000"),
            ),
            errors=ERRORS,
        ),
    )
    for verb, allowed, apply, key in (
        ("retry", ("failed", "completed"), engine.retry, "retried"),
        ("promote", ("delayed",), engine.promote, "promoted"),
        ("cancel", ("active",), engine.cancel, "cancelled"),
    ):
        api.add(
            "POST",
            f"/queues/:name/jobs/:id/{verb}",
            action(verb, allowed, apply, key),
            Doc(
                f"{verb.capitalize()} a job ({' or '.join(allowed)})",
                tag,
                data_of(
                    {"type": "object", "required": [key], "properties": {key: {"type": "boolean"}}}
                ),
                errors=ERRORS,
            ),
        )
    api.add(
        "PATCH",
        "/queues/:name/jobs/:id",
        edit,
        Doc(
            "Edit a job's data or priority (not while active)",
            tag,
            data_of(job),
            body=ref("JobEdit"),
            body_required=True,
            errors=ERRORS,
        ),
    )
    api.add(
        "DELETE",
        "/queues/:name/jobs/:id",
        remove,
        Doc(
            "Remove a job (not while active: cancel it)",
            tag,
            data_of(
                {
                    "type": "object",
                    "required": ["removed"],
                    "properties": {"removed": {"type": "boolean"}},
                }
            ),
            errors=ERRORS,
        ),
    )

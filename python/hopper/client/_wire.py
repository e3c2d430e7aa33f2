"""What the HTTP client and the WebSocket channel share: push options (snake_case keyword
arguments ↔ bunqueue's camelCase push body), reply decoding and the `Job` a pull returns."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import orjson

from hopper._engine import DEFAULT_MAX_ATTEMPTS
from hopper.client.errors import BadRequestError, ServerError, error_for
from hopper.job import Job
from hopper.push_options import FIELDS, LIST_FIELDS, as_list
from hopper.push_options import PushOptions as PushOptions
from hopper.push_options import push_body as push_body


def job_body(job: Mapping[str, Any]) -> dict[str, Any]:
    """One job of a push-many: `data` plus options in snake_case or camelCase. Unknown
    keys are passed on for the server to judge."""
    body: dict[str, Any] = {}
    for key, value in job.items():
        field = FIELDS.get(key, key)
        if value is not None:
            body[field] = as_list(value) if field in LIST_FIELDS else value
    if "data" not in body:
        raise BadRequestError("each job needs `data`")
    return body


def job_bodies(jobs: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    return [job_body(j) for j in jobs]


def dumps(value: Any) -> bytes:
    try:
        return orjson.dumps(value)
    except TypeError as e:
        raise BadRequestError(f"not JSON-serializable: {e}") from None


def decode(raw: bytes | str, status: int | None) -> dict[str, Any]:
    """An answer's `{ok: true, ...}` object, or the error it stands for."""
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        text = raw[:200] if isinstance(raw, str) else raw[:200].decode(errors="replace")
        raise ServerError(f"answer is not JSON (status {status}): {text!r}", status) from None
    if not isinstance(body, dict):
        raise ServerError(f"answer is not a JSON object (status {status})", status)
    return check(body, status)


def check(body: dict[str, Any], status: int | None) -> dict[str, Any]:
    """`body` if it is a success (`ok: true`), else raises the error it carries."""
    if body.get("ok") is True and (status is None or status < 400):
        return body
    error = body.get("error")
    message = error if isinstance(error, str) and error else f"request failed (status {status})"
    raise error_for(status, message)


def job_from(body: Mapping[str, Any]) -> Job | None:
    """The `Job` of a pull answer `{ok, job, token}` (None when no job came)."""
    job = body.get("job")
    if not job:
        return None
    token = body.get("token")
    return Job(
        id=job["id"],
        queue=job.get("queue", ""),
        name=job.get("name") or "default",
        data=job.get("data"),
        token=token if isinstance(token, str) else "",
        priority=job.get("priority", 0),
        attempts=job.get("attempts", 0),
        max_attempts=job.get("maxAttempts", DEFAULT_MAX_ATTEMPTS),
        created_at=job.get("createdAt", 0),
    )


def ack_body(token: str | None, result: Any) -> dict[str, Any]:
    body: dict[str, Any] = {}
    if result is not None:
        body["result"] = result
    if token:
        body["token"] = token
    return body


def fail_body(
    token: str | None, error: str | None, stack: Sequence[str] | None = None
) -> dict[str, Any]:
    body: dict[str, Any] = {}
    if error is not None:
        body["error"] = error
    if token:
        body["token"] = token
    if stack is not None:
        body["stack"] = [str(line) for line in stack]
    return body


def poll_ms(timeout: float) -> int:
    """A long-poll time in seconds as the API's whole milliseconds (0..60000)."""
    if not 0 <= timeout <= 60:
        raise BadRequestError("pull timeout must be between 0 and 60 seconds")
    return int(timeout * 1000)

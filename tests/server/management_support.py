"""Helpers for the management API contract tests (`{basePath}/api`): envelope assertions,
object shape checks, job-server seeding and a reader of named SSE events."""

from __future__ import annotations

import contextlib
import json
import re
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from typing import Any

import httpx
from support import Server, expect_ok, pull, push

STATES = ("waiting", "waiting-children", "delayed", "active", "completed", "failed")
ISO = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")
JOB_FIELDS = {
    "id",
    "name",
    "queueName",
    "data",
    "state",
    "attemptsMade",
    "progress",
    "returnvalue",
    "failedReason",
    "opts",
    "logs",
    "stacktrace",
    "createdAt",
    "processedAt",
    "completedAt",
    "failedAt",
    "delayUntil",
    "parentId",
    "parentQueueName",
    "childrenIds",
    "pendingChildrenCount",
    "groupId",
}
JOB_TIMES = ("createdAt", "processedAt", "completedAt", "failedAt", "delayUntil")
SUMMARY_FIELDS = {"name", "counts", "isPaused", "latestActivity", "scheduledCount"}
BUCKET_FIELDS = {
    "queueName",
    "jobName",
    "periodStart",
    "granularity",
    "completedCount",
    "failedCount",
    "totalProcessMs",
    "minProcessMs",
    "maxProcessMs",
    "pushedCount",  # extension: jobs created in the period
}
EVENT_FIELDS = {"type", "queueName", "jobId", "data", "timestamp"}


# ----- envelopes ----------------------------------------------------------------------


def _json(resp: httpx.Response) -> Any:
    assert resp.headers.get("content-type", "").startswith("application/json"), (
        resp.status_code,
        resp.headers,
        resp.text,
    )
    return resp.json()


def api_data(resp: httpx.Response, status: int = 200) -> Any:
    """Asserts `{data}` with `status`; returns data."""
    assert resp.status_code == status, (resp.status_code, resp.text)
    body = _json(resp)
    assert isinstance(body, dict) and set(body) == {"data"}, body
    return body["data"]


def api_page(resp: httpx.Response) -> tuple[list[Any], dict[str, int]]:
    """Asserts `{data: [...], meta: {total, start, end}}`; returns both."""
    assert resp.status_code == 200, (resp.status_code, resp.text)
    body = _json(resp)
    assert set(body) == {"data", "meta"}, body
    assert isinstance(body["data"], list)
    assert set(body["meta"]) == {"total", "start", "end"}, body["meta"]
    return body["data"], body["meta"]


def api_error(resp: httpx.Response, status: int, code: str, message: str | None = None) -> str:
    """Asserts `{error: {code, message}}`; returns the message."""
    assert resp.status_code == status, (resp.status_code, resp.text)
    body = _json(resp)
    assert set(body) == {"error"}, body
    assert set(body["error"]) == {"code", "message"}, body
    assert body["error"]["code"] == code, body
    text = body["error"]["message"]
    assert isinstance(text, str) and text, body
    if message is not None:
        assert text == message, body
    return text  # type: ignore[no-any-return]


# ----- shapes -------------------------------------------------------------------------


def iso_ms(text: str) -> int:
    """Milliseconds since the epoch of an ISO-8601 UTC time with milliseconds."""
    assert ISO.match(text), text
    moment = datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc)
    return round(moment.timestamp() * 1000)


def check_job(job: dict[str, Any]) -> dict[str, Any]:
    assert set(job) >= JOB_FIELDS, JOB_FIELDS - set(job)
    assert isinstance(job["id"], str) and job["id"]
    assert job["state"] in STATES
    assert isinstance(job["opts"], dict)
    assert isinstance(job["logs"], list) and isinstance(job["stacktrace"], list)
    assert isinstance(job["childrenIds"], list)
    assert isinstance(job["attemptsMade"], int) and isinstance(job["pendingChildrenCount"], int)
    assert ISO.match(job["createdAt"]), job["createdAt"]
    for key in JOB_TIMES[1:]:
        assert job[key] is None or ISO.match(job[key]), (key, job[key])
    return job


def check_summary(summary: dict[str, Any]) -> dict[str, Any]:
    assert set(summary) >= SUMMARY_FIELDS, summary
    assert set(summary["counts"]) == set(STATES), summary["counts"]
    assert all(isinstance(n, int) and n >= 0 for n in summary["counts"].values())
    assert isinstance(summary["isPaused"], bool)
    assert summary["latestActivity"] is None or ISO.match(summary["latestActivity"])
    assert isinstance(summary["scheduledCount"], int)
    return summary


# ----- the job server, to put jobs in each state ----------------------------------------


def ack(client: httpx.Client, job_id: str, token: str, result: Any = None) -> None:
    expect_ok(client.post(f"/jobs/{job_id}/ack", json={"token": token, "result": result}))


def fail(client: httpx.Client, job_id: str, token: str, error: str = "boom") -> None:
    expect_ok(client.post(f"/jobs/{job_id}/fail", json={"token": token, "error": error}))


def take(client: httpx.Client, queue: str, job_id: str) -> str:
    """Pulls the next job, which must be `job_id`; returns its lease token."""
    job, token = pull(client, queue)
    assert job["id"] == job_id, (job["id"], job_id)
    return token


def seed_states(client: httpx.Client, queue: str) -> dict[str, str]:
    """One job in each of the six states; returns state -> job id."""
    ids: dict[str, str] = {}
    ids["completed"] = push(client, queue, name="done", data={"k": "completed"})
    ack(client, ids["completed"], take(client, queue, ids["completed"]), {"ok": 1})
    ids["failed"] = push(client, queue, name="bad", data={"k": "failed"}, maxAttempts=1)
    fail(client, ids["failed"], take(client, queue, ids["failed"]), "exploded")
    ids["active"] = push(client, queue, name="busy", data={"k": "active"})
    take(client, queue, ids["active"])
    ids["waiting"] = push(client, queue, name="todo", data={"k": "waiting"})
    ids["delayed"] = push(client, queue, name="later", data={"k": "delayed"}, delay=3_600_000)
    ids["waiting-children"] = push(
        client, queue, name="parent", data={"k": "parent"}, dependsOn=[ids["waiting"]]
    )
    return ids


def counts(client: httpx.Client, queue: str) -> dict[str, int]:
    return api_data(client.get(f"/api/queues/{queue}"))["counts"]  # type: ignore[no-any-return]


# ----- named SSE events ---------------------------------------------------------------

READ_TIMEOUT_S = 5.0
MAX_FRAMES = 500


class NamedEvents:
    """Reads `event: <name>` + `data: <json>` frames off an open httpx stream."""

    def __init__(self, resp: httpx.Response) -> None:
        self.resp = resp
        self._lines = resp.iter_lines()  # kept: dropping the iterator closes the stream
        self.raw: list[str] = []
        self.seen: list[tuple[str, Any]] = []

    def next_frame(self) -> tuple[str, Any]:
        name: str | None = None
        data: list[str] = []
        for _ in range(1000):
            line = next(self._lines)  # bounded by the client's read timeout
            self.raw.append(line)
            if line == "":
                if name is not None or data:
                    assert name is not None, f"a frame without an event name: {data}"
                    assert len(data) == 1, f"data must be one line of JSON: {data}"
                    frame = (name, json.loads("\n".join(data)))
                    self.seen.append(frame)
                    return frame
                continue
            if line.startswith(":"):
                continue  # comment (keep-alive)
            field, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if field == "event":
                name = value
            elif field == "data":
                data.append(value)
            else:
                raise AssertionError(f"unexpected SSE line {line!r}")
        raise AssertionError("no complete frame in 1000 lines")

    def until(self, done: Callable[[str, Any], bool]) -> list[tuple[str, Any]]:
        """Frames up to and including the first for which `done` is true."""
        frames = []
        for _ in range(MAX_FRAMES):
            frame = self.next_frame()
            frames.append(frame)
            if done(*frame):
                return frames
        raise AssertionError(f"not found in {MAX_FRAMES} frames: {frames[-5:]}")

    def expect(self, name: str, job_id: str | None = None) -> dict[str, Any]:
        """The next frame named `name` (for `job_id`, if given); checks its shape."""

        def match(event: str, body: Any) -> bool:
            return event == name and (job_id is None or body.get("jobId") == job_id)

        event, body = self.until(match)[-1]
        check_event(event, body)
        return body  # type: ignore[no-any-return]


def check_event(name: str, body: dict[str, Any]) -> None:
    assert set(body) == EVENT_FIELDS, body
    assert body["type"] == name
    assert isinstance(body["queueName"], str) and body["queueName"]
    if name.startswith("job:"):
        assert isinstance(body["jobId"], str) and body["jobId"]
    now = time.time() * 1000
    assert now - 60_000 < iso_ms(body["timestamp"]) <= now + 1000, body["timestamp"]


@contextlib.contextmanager
def open_events(
    server: Server, path: str, headers: dict[str, str] | None = None
) -> Iterator[NamedEvents]:
    """An open named-event stream whose `connected` frame has been read."""
    timeout = httpx.Timeout(10.0, read=READ_TIMEOUT_S)
    with (
        httpx.Client(base_url=server.url, timeout=timeout, headers=headers) as client,
        client.stream("GET", path) as resp,
    ):
        assert resp.status_code == 200, (resp.status_code, resp.read())
        assert resp.headers["content-type"].startswith("text/event-stream")
        stream = NamedEvents(resp)
        first = stream.next_frame()
        assert first == ("connected", {}), first
        assert [line for line in stream.raw if not line.startswith(":")][:2] == [
            "event: connected",
            "data: {}",
        ], stream.raw
        yield stream

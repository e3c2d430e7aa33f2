"""The management API (the Conveyor dashboard's REST API under `{basePath}/api`) against the
real server: every endpoint and error code, then the read-only, auth, allow-list,
metrics-off and base-path matrices, each on its own server."""

from __future__ import annotations

import itertools
import json
import threading
import time
import uuid
from typing import Any, cast

import httpx
import pytest
from management_support import (
    BUCKET_FIELDS,
    ISO,
    JOB_FIELDS,
    STATES,
    ack,
    api_data,
    api_error,
    api_page,
    check_job,
    check_summary,
    counts,
    fail,
    iso_ms,
    open_events,
    seed_states,
    take,
)
from support import Server, ServerFactory, expect_error, expect_ok, get_job, pull, push
from tcp_client import Conn
from websockets.sync.client import ClientConnection
from websockets.sync.client import connect as ws_connect

NO_COUNTS = dict.fromkeys(STATES, 0)
SCHEDULER_FIELDS = {
    "name",
    "queueName",
    "jobName",
    "data",
    "schedule",
    "repeatEvery",
    "timezone",
    "priority",
    "maxLimit",
    "executions",
    "nextRunAt",
    "uniqueKey",
    "skipMissedOnRestart",
    "skipIfNoWorker",
    "preventOverlap",
    "jobOptions",
}


def one_each() -> dict[str, int]:
    return dict.fromkeys(STATES, 1)


def job_of(client: httpx.Client, queue: str, job_id: str) -> dict[str, Any]:
    return check_job(api_data(client.get(f"/api/queues/{queue}/jobs/{job_id}")))


def pull_none(client: httpx.Client, queue: str) -> None:
    assert expect_ok(client.get(f"/queues/{queue}/jobs"))["job"] is None


# ----- config, envelope, unknown routes -----------------------------------------------------


def test_config_is_open_and_says_what_is_on(client: httpx.Client) -> None:
    resp = client.get("/api/config")
    assert api_data(resp) == {"readOnly": False, "authRequired": False}
    assert resp.headers["access-control-allow-origin"] == "*"


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api"),
        ("GET", "/api/nope"),
        ("GET", "/api/queues/x/jobs/y/nope"),
        ("PUT", "/api/flows/x"),
    ],
)
def test_unknown_route_under_api_is_a_json_404(
    client: httpx.Client, method: str, path: str
) -> None:
    resp = client.request(method, path)
    api_error(resp, 404, "NOT_FOUND")
    assert "allow" not in resp.headers


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("POST", "/api/queues", "GET, HEAD, OPTIONS"),
        ("PUT", "/api/queues/x", "GET, HEAD, DELETE, OPTIONS"),
        ("DELETE", "/api/flows", "GET, HEAD, OPTIONS"),
        ("GET", "/api/queues/x/pause", "POST, OPTIONS"),
        ("PUT", "/api/queues/x/jobs/y", "GET, HEAD, PATCH, DELETE, OPTIONS"),
    ],
)
def test_known_path_with_another_method_is_a_405_with_allow(
    client: httpx.Client, method: str, path: str, allow: str
) -> None:
    resp = client.request(method, path)
    api_error(resp, 405, "METHOD_NOT_ALLOWED", f"Method {method} not allowed")
    assert resp.headers["allow"] == allow


def test_head_answers_like_get_without_body(client: httpx.Client) -> None:
    resp = client.head("/api/queues")
    assert resp.status_code == 200
    assert resp.content == b""


def test_preflight_is_answered(client: httpx.Client) -> None:
    resp = client.options(
        "/api/queues/x/jobs",
        headers={"Origin": "http://ui.test", "Access-Control-Request-Method": "PATCH"},
    )
    assert resp.status_code == 204
    assert "PATCH" in resp.headers["access-control-allow-methods"]
    assert resp.headers["access-control-allow-origin"] == "*"


# ----- queues -------------------------------------------------------------------------------


def test_queue_list_and_detail_count_every_state(client: httpx.Client, queue: str) -> None:
    seed_states(client, queue)
    listed = {s["name"]: s for s in api_data(client.get("/api/queues"))}
    summary = check_summary(listed[queue])
    assert summary["counts"] == one_each()
    assert summary["isPaused"] is False
    assert summary["scheduledCount"] == 0
    assert abs(iso_ms(summary["latestActivity"]) - time.time() * 1000) < 60_000

    detail = api_data(client.get(f"/api/queues/{queue}"))
    check_summary(detail)
    assert detail["name"] == queue
    assert detail["counts"] == one_each()
    assert detail["pausedNames"] == []


def test_scheduled_count_counts_repeat_jobs(client: httpx.Client, queue: str) -> None:
    push(client, queue, repeat={"every": 3_600_000})
    push(client, queue)
    summary = next(s for s in api_data(client.get("/api/queues")) if s["name"] == queue)
    assert summary["scheduledCount"] == 1


def test_unknown_queue_detail_is_not_found(client: httpx.Client, queue: str) -> None:
    api_error(client.get(f"/api/queues/{queue}"), 404, "NOT_FOUND", f'Queue "{queue}" not found')
    assert queue not in {s["name"] for s in api_data(client.get("/api/queues"))}


@pytest.mark.parametrize("body", [None, {}, {"jobName": "__all__"}, {"jobName": ""}])
def test_pause_and_resume_whole_queue(client: httpx.Client, queue: str, body: Any) -> None:
    job_id = push(client, queue)
    kw: dict[str, Any] = {} if body is None else {"json": body}
    assert api_data(client.post(f"/api/queues/{queue}/pause", **kw)) == {"paused": "__all__"}
    detail = api_data(client.get(f"/api/queues/{queue}"))
    assert detail["isPaused"] is True
    assert detail["pausedNames"] == ["__all__"]
    listed = next(s for s in api_data(client.get("/api/queues")) if s["name"] == queue)
    assert listed["isPaused"] is True
    pull_none(client, queue)

    assert api_data(client.post(f"/api/queues/{queue}/resume", **kw)) == {"resumed": "__all__"}
    detail = api_data(client.get(f"/api/queues/{queue}"))
    assert detail["isPaused"] is False and detail["pausedNames"] == []
    assert pull(client, queue)[0]["id"] == job_id


def test_pause_and_resume_one_job_name(client: httpx.Client, queue: str) -> None:
    mail = push(client, queue, name="mail")
    sms = push(client, queue, name="sms")
    paused = api_data(client.post(f"/api/queues/{queue}/pause", json={"jobName": "mail"}))
    assert paused == {"paused": "mail"}
    detail = api_data(client.get(f"/api/queues/{queue}"))
    assert detail["pausedNames"] == ["mail"]
    assert detail["isPaused"] is False
    assert pull(client, queue)[0]["id"] == sms  # mail is skipped while paused
    pull_none(client, queue)

    resumed = api_data(client.post(f"/api/queues/{queue}/resume", json={"jobName": "mail"}))
    assert resumed == {"resumed": "mail"}
    assert api_data(client.get(f"/api/queues/{queue}"))["pausedNames"] == []
    assert pull(client, queue)[0]["id"] == mail


@pytest.mark.parametrize("verb", ["pause", "resume"])
@pytest.mark.parametrize(
    "body",
    [
        b"[1]",
        b'"x"',
        b'{"jobName": 5}',
        b"{nope",
        b'{"jobName": "a\\u0001b"}',  # no job name has control characters
        b'{"jobName": "' + b"x" * 257 + b'"}',  # nor more than 256 bytes
    ],
)
def test_pause_resume_reject_bad_bodies(
    client: httpx.Client, queue: str, verb: str, body: bytes
) -> None:
    push(client, queue)
    resp = client.post(f"/api/queues/{queue}/{verb}", content=body)
    api_error(resp, 400, "BAD_REQUEST")
    assert api_data(client.get(f"/api/queues/{queue}"))["pausedNames"] == []


def test_drain_removes_waiting_delayed_and_waiting_children(
    client: httpx.Client, queue: str
) -> None:
    ids = seed_states(client, queue)
    assert api_data(client.post(f"/api/queues/{queue}/drain")) == {"drained": True}
    after = counts(client, queue)
    assert after["waiting"] == 0 and after["delayed"] == 0
    assert (after["active"], after["completed"]) == (1, 1)
    # The job waiting for the drained one goes with it, instead of failing because its
    # dependency was removed: nothing new lands among the failed.
    for state in ("waiting", "delayed", "waiting-children"):
        api_error(client.get(f"/api/queues/{queue}/jobs/{ids[state]}"), 404, "NOT_FOUND")
    assert after["failed"] == 1 and after["waiting-children"] == 0


def test_drain_fails_dependents_in_other_queues_naming_the_drain(
    client: httpx.Client, queue: str
) -> None:
    other = f"{queue}-other"
    dependency = push(client, queue)
    dependent = push(client, other, dependsOn=[dependency])
    api_data(client.post(f"/api/queues/{queue}/drain"))
    job = job_of(client, other, dependent)
    assert job["state"] == "failed"
    assert job["failedReason"] == (
        f"Dependency {dependency} was removed by a drain of queue {queue}"
    )


def test_clean_removes_old_jobs_of_a_state(client: httpx.Client, queue: str) -> None:
    for _ in range(2):
        job_id = push(client, queue)
        ack(client, job_id, take(client, queue, job_id))
    failed = push(client, queue, maxAttempts=1)
    fail(client, failed, take(client, queue, failed))
    url = f"/api/queues/{queue}/clean"
    assert api_data(client.post(url, json={"state": "completed", "grace": 3_600_000})) == {
        "removed": 0
    }
    assert counts(client, queue)["completed"] == 2
    assert api_data(client.post(url, json={"state": "completed", "grace": 0})) == {"removed": 2}
    assert counts(client, queue)["completed"] == 0
    assert counts(client, queue)["failed"] == 1
    assert api_data(client.post(url, json={"state": "failed", "grace": 0})) == {"removed": 1}
    assert counts(client, queue) == NO_COUNTS


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"{nope",
        b"[]",
        b"{}",
        b'{"state": "bogus", "grace": 0}',
        b'{"state": "active", "grace": 0}',
        b'{"state": "completed", "grace": -1}',
        b'{"state": "completed", "grace": "1000"}',
        b'{"state": "completed", "grace": 1.5}',
        # grace is required, as by the reference (absent, it would clean everything)
        b'{"state": "completed"}',
        b'{"state": "completed", "grace": 0, "limit": -1}',
        b'{"state": "completed", "grace": 0, "limit": "1"}',
        b'{"state": "completed", "grace": 0, "limit": 9007199254740992}',
    ],
)
def test_clean_rejects_bad_bodies(client: httpx.Client, queue: str, body: bytes) -> None:
    job_id = push(client, queue)
    ack(client, job_id, take(client, queue, job_id))
    api_error(client.post(f"/api/queues/{queue}/clean", content=body), 400, "BAD_REQUEST")
    assert counts(client, queue)["completed"] == 1


def test_clean_honours_a_limit_oldest_first(client: httpx.Client, queue: str) -> None:
    """`limit` (an extension; the reference ignores it and cleans all) bounds a clean,
    oldest first, as BullMQ's clean(grace, limit, type) does."""
    done = []
    for _ in range(3):
        job_id = push(client, queue)
        ack(client, job_id, take(client, queue, job_id))
        done.append(job_id)
    url = f"/api/queues/{queue}/clean"
    body = {"state": "completed", "grace": 0, "limit": 2}
    finished = [job_of(client, queue, job_id)["completedAt"] for job_id in done]
    assert api_data(client.post(url, json=body)) == {"removed": 2}
    remaining, _ = api_page(client.get(f"/api/queues/{queue}/jobs", params={"state": "completed"}))
    # the newest stays (jobs finished in the same millisecond may go in either order)
    assert len(remaining) == 1 and remaining[0]["completedAt"] == max(finished)
    body = {"state": "completed", "grace": 0, "limit": 0}
    assert api_data(client.post(url, json=body)) == {"removed": 1}


def test_retry_all_failed_or_completed(client: httpx.Client, queue: str) -> None:
    failed = []
    for _ in range(2):
        job_id = push(client, queue, maxAttempts=1)
        fail(client, job_id, take(client, queue, job_id))
        failed.append(job_id)
    url = f"/api/queues/{queue}/retry"
    assert api_data(client.post(url, json={"state": "failed"})) == {"retried": 2}
    assert counts(client, queue)["waiting"] == 2
    for job_id in failed:
        job = job_of(client, queue, job_id)
        assert job["state"] == "waiting"
        assert job["attemptsMade"] == 0 and job["failedReason"] is None
    job, token = pull(client, queue)
    done = job["id"]
    ack(client, done, token)
    assert api_data(client.post(url, json={"state": "completed"})) == {"retried": 1}
    assert job_of(client, queue, done)["state"] == "waiting"


@pytest.mark.parametrize(
    "body", [b"", b"{nope", b"{}", b'{"state": "waiting"}', b'{"state": "active"}', b"[1]"]
)
def test_retry_all_rejects_bad_bodies(client: httpx.Client, queue: str, body: bytes) -> None:
    job_id = push(client, queue, maxAttempts=1)
    fail(client, job_id, take(client, queue, job_id))
    api_error(client.post(f"/api/queues/{queue}/retry", content=body), 400, "BAD_REQUEST")
    assert counts(client, queue)["failed"] == 1


def test_promote_all_delayed(client: httpx.Client, queue: str) -> None:
    ids = [push(client, queue, delay=3_600_000) for _ in range(2)]
    push(client, queue)
    assert api_data(client.post(f"/api/queues/{queue}/promote")) == {"promoted": 2}
    assert counts(client, queue)["waiting"] == 3 and counts(client, queue)["delayed"] == 0
    for job_id in ids:
        job = job_of(client, queue, job_id)
        assert job["state"] == "waiting" and job["delayUntil"] is None


def test_obliterate_refused_while_active_unless_forced(client: httpx.Client, queue: str) -> None:
    ids = seed_states(client, queue)
    api_error(client.delete(f"/api/queues/{queue}"), 400, "BAD_REQUEST")
    api_error(client.delete(f"/api/queues/{queue}?force=false"), 400, "BAD_REQUEST")
    api_error(client.delete(f"/api/queues/{queue}?force=yes"), 400, "BAD_REQUEST")
    assert counts(client, queue) == one_each()

    resp = client.delete(f"/api/queues/{queue}", params={"force": "true"})
    assert api_data(resp) == {"obliterated": True}
    api_error(client.get(f"/api/queues/{queue}"), 404, "NOT_FOUND")
    assert queue not in {s["name"] for s in api_data(client.get("/api/queues"))}
    for job_id in ids.values():
        expect_error(client.get(f"/jobs/{job_id}"), 404)
    api_error(client.delete(f"/api/queues/{queue}?force=true"), 404, "NOT_FOUND")


def test_obliterate_without_active_jobs_needs_no_force(client: httpx.Client, queue: str) -> None:
    push(client, queue)
    push(client, queue, delay=60_000)
    assert api_data(client.delete(f"/api/queues/{queue}")) == {"obliterated": True}
    api_error(client.get(f"/api/queues/{queue}"), 404, "NOT_FOUND")


def test_failure_groups_and_retry_by_reason(client: httpx.Client, queue: str) -> None:
    ids = []
    for reason in ("boom", "other", "boom"):
        job_id = push(client, queue, maxAttempts=1)
        fail(client, job_id, take(client, queue, job_id), reason)
        ids.append(job_id)
    groups = api_data(client.get(f"/api/queues/{queue}/failures"))
    assert groups == [
        {"reason": "boom", "count": 2, "latestJobId": ids[2]},
        {"reason": "other", "count": 1, "latestJobId": ids[1]},
    ]
    url = f"/api/queues/{queue}/failures/retry"
    for body in (b"", b"{", b"{}", b'{"reason": 1}', b"[]"):
        api_error(client.post(url, content=body), 400, "BAD_REQUEST")
    assert api_data(client.post(url, json={"reason": "nothing-failed-so"})) == {"retried": 0}
    assert api_data(client.post(url, json={"reason": "boom"})) == {"retried": 2}
    assert counts(client, queue)["failed"] == 1 and counts(client, queue)["waiting"] == 2
    assert job_of(client, queue, ids[0])["state"] == "waiting"
    assert api_data(client.get(f"/api/queues/{queue}/failures")) == [groups[1]]


@pytest.mark.parametrize("verb", ["drain", "promote", "clean", "retry", "failures/retry"])
def test_queue_mutation_of_unknown_queue_is_not_found(
    client: httpx.Client, queue: str, verb: str
) -> None:
    body = {"state": "failed", "grace": 0, "reason": "x"}
    api_error(client.post(f"/api/queues/{queue}/{verb}", json=body), 404, "NOT_FOUND")
    if verb == "drain":
        api_error(client.get(f"/api/queues/{queue}/failures"), 404, "NOT_FOUND")


# ----- jobs: list and pagination --------------------------------------------------------------


def test_list_jobs_pagination_edges(client: httpx.Client, queue: str) -> None:
    ids = [push(client, queue, data={"i": i}) for i in range(5)]
    url = f"/api/queues/{queue}/jobs"

    def page(**params: Any) -> tuple[list[str], dict[str, int]]:
        jobs, meta = api_page(client.get(url, params=params))
        return [check_job(j)["id"] for j in jobs], meta

    assert page() == (ids, {"total": 5, "start": 0, "end": 100})
    assert page(state="waiting", start=1, end=3) == (ids[1:3], {"total": 5, "start": 1, "end": 3})
    assert page(start=4, end=5) == ([ids[4]], {"total": 5, "start": 4, "end": 5})
    assert page(start=0, end=1) == ([ids[0]], {"total": 5, "start": 0, "end": 1})
    # start beyond the total: an empty page that still tells the total
    assert page(start=10) == ([], {"total": 5, "start": 10, "end": 100})
    assert page(start=10, end=20) == ([], {"total": 5, "start": 10, "end": 20})
    # end before start: an empty page
    got, meta = page(start=3, end=1)
    assert got == [] and meta["total"] == 5 and meta["start"] == 3
    # end = 0 means the default
    assert page(start=0, end=0)[0] == ids
    # as the reference: a negative start is 0; a negative end is before any start, so the
    # page is empty (its end is its start)
    assert page(start=-3, end=2) == (ids[:2], {"total": 5, "start": 0, "end": 2})
    assert page(start=1, end=-3) == ([], {"total": 5, "start": 1, "end": 1})
    # exactly 1000 is allowed, 1001 is not
    assert page(start=2, end=1002) == (ids[2:], {"total": 5, "start": 2, "end": 1002})
    api_error(client.get(url, params={"start": 0, "end": 1001}), 400, "BAD_REQUEST")
    api_error(client.get(url, params={"start": 5, "end": 2000}), 400, "BAD_REQUEST")


@pytest.mark.parametrize(
    "params",
    [
        {"state": "bogus"},
        {"state": "Waiting"},
        {"state": ""},
        {"start": "x"},
        {"end": "1.5"},
        # too big to echo in meta (found by schemathesis: a 500)
        {"start": str(2**72), "end": "7"},
        {"start": str(2**64), "end": str(2**64 + 5)},
        {"start": "0", "end": str(-(2**70))},
    ],
)
def test_list_jobs_rejects_bad_params(
    client: httpx.Client, queue: str, params: dict[str, str]
) -> None:
    push(client, queue)
    api_error(client.get(f"/api/queues/{queue}/jobs", params=params), 400, "BAD_REQUEST")


def test_list_jobs_by_each_state(client: httpx.Client, queue: str) -> None:
    ids = seed_states(client, queue)
    for state, job_id in ids.items():
        jobs, meta = api_page(client.get(f"/api/queues/{queue}/jobs", params={"state": state}))
        assert [j["id"] for j in jobs] == [job_id], state
        assert jobs[0]["state"] == state
        assert meta["total"] == 1


def test_list_jobs_of_an_unknown_queue_is_empty(client: httpx.Client, queue: str) -> None:
    assert api_page(client.get(f"/api/queues/{queue}/jobs")) == (
        [],
        {"total": 0, "start": 0, "end": 100},
    )


# ----- jobs: add ------------------------------------------------------------------------------


def test_add_job_answers_201_and_the_job(client: httpx.Client, queue: str) -> None:
    resp = client.post(
        f"/api/queues/{queue}/jobs", json={"name": "send-email", "data": {"to": "a@b.c"}}
    )
    job = check_job(api_data(resp, 201))
    assert job["name"] == "send-email"
    assert job["queueName"] == queue
    assert job["data"] == {"to": "a@b.c"}
    assert job["state"] == "waiting"
    assert job["attemptsMade"] == 0 and job["progress"] == 0
    assert job["returnvalue"] is None and job["failedReason"] is None
    assert job["parentId"] is None and job["childrenIds"] == []
    served = get_job(client, job["id"])
    assert served["queue"] == queue
    assert served["name"] == "send-email"
    assert served["data"] == {"to": "a@b.c"}
    assert job_of(client, queue, job["id"]) == job


def test_add_job_to_a_queue_that_does_not_exist_creates_it(
    client: httpx.Client, queue: str
) -> None:
    """As the reference: the queue comes into being with its first job (hopper checks
    the name: a name the job server refuses is a 400, where the reference takes any)."""
    api_error(client.get(f"/api/queues/{queue}"), 404, "NOT_FOUND")
    api_data(client.post(f"/api/queues/{queue}/jobs", json={"name": "first"}), 201)
    assert api_data(client.get(f"/api/queues/{queue}"))["counts"]["waiting"] == 1
    assert queue in [q["name"] for q in api_data(client.get("/api/queues"))]
    api_error(client.post("/api/queues/a%20b/jobs", json={"name": "x"}), 400, "BAD_REQUEST")


def test_add_job_without_data_gets_an_empty_object(client: httpx.Client, queue: str) -> None:
    job = api_data(client.post(f"/api/queues/{queue}/jobs", json={"name": "n"}), 201)
    assert job["data"] == {}


def test_job_object_has_the_references_fields_hopper_can_fill(
    client: httpx.Client, queue: str
) -> None:
    """The reference's job object less what hopper has no counterpart for (`lockUntil`,
    `lockedBy`, `cancelledAt`, `discarded`, `attemptLogs`), plus `tags` and `priority`."""
    job_id = push(client, queue, uniqueKey=f"key-{queue}", tags=["t"], priority=3)
    job = job_of(client, queue, job_id)
    assert set(job) == JOB_FIELDS | {"deduplicationKey", "tags", "priority"}
    assert job["deduplicationKey"] == f"key-{queue}"
    assert (job["tags"], job["priority"]) == (["t"], 3)
    assert job_of(client, queue, push(client, queue))["deduplicationKey"] is None


def test_add_job_maps_every_option(client: httpx.Client, queue: str) -> None:
    url = f"/api/queues/{queue}/jobs"
    custom = f"custom-{uuid.uuid4().hex}"
    opts = {
        "priority": 7,
        "attempts": 5,
        "backoff": {"type": "fixed", "delay": 250},
        "lifo": True,
        "jobId": custom,
        "deduplication": {"key": f"dedup-{queue}"},
        "group": {"id": "tenant-1"},
        "timeout": 30_000,
        "ttl": 86_400_000,
        "tags": ["a", "b"],
        "removeOnComplete": True,
        "removeOnFail": True,
        "durable": True,
    }
    job = check_job(api_data(client.post(url, json={"name": "n", "opts": opts}), 201))
    assert job["id"] == custom
    assert job["groupId"] == "tenant-1"
    served = get_job(client, custom)
    expected = {
        "priority": 7,
        "maxAttempts": 5,
        "backoff": 250,
        "lifo": True,
        "uniqueKey": f"dedup-{queue}",
        "groupId": "tenant-1",
        "timeout": 30_000,
        "ttl": 86_400_000,
        "tags": ["a", "b"],
        "removeOnComplete": True,
        "removeOnFail": True,
        "durable": True,
    }
    assert {k: served[k] for k in expected} == expected
    # the options come back in the reference's vocabulary
    assert job["opts"]["priority"] == 7
    assert job["opts"]["attempts"] == 5
    assert job["opts"]["backoff"]["delay"] == 250
    assert job["opts"]["lifo"] is True
    assert job["opts"]["deduplication"] == {"key": f"dedup-{queue}"}
    assert job["opts"]["group"] == {"id": "tenant-1"}

    # deduplication: the same key answers the existing job
    again = api_data(
        client.post(url, json={"name": "n", "opts": {"deduplication": {"key": f"dedup-{queue}"}}}),
        201,
    )
    assert again["id"] == custom
    assert counts(client, queue)["waiting"] == 1


def test_add_job_with_delay_backoff_number_and_repeat(client: httpx.Client, queue: str) -> None:
    url = f"/api/queues/{queue}/jobs"
    delayed = api_data(
        client.post(url, json={"name": "later", "opts": {"delay": 60_000, "backoff": 300}}), 201
    )
    assert delayed["state"] == "delayed"
    assert iso_ms(delayed["delayUntil"]) - iso_ms(delayed["createdAt"]) == 60_000
    assert delayed["opts"]["delay"] == 60_000
    served = get_job(client, delayed["id"])
    assert served["runAt"] - served["createdAt"] == 60_000
    assert served["backoff"] == 300

    repeat = api_data(
        client.post(url, json={"name": "tick", "opts": {"repeat": {"every": 3_600_000}}}), 201
    )
    assert repeat["opts"]["repeat"] == {"every": 3_600_000}
    assert get_job(client, repeat["id"])["repeat"]["every"] == 3_600_000
    summary = next(s for s in api_data(client.get("/api/queues")) if s["name"] == queue)
    assert summary["scheduledCount"] == 1


@pytest.mark.parametrize(
    "body",
    [
        b"{nope",
        b"",
        b"[]",
        b'"job"',
        b"{}",
        b'{"name": ""}',
        b'{"name": 5}',
        b'{"name": "n", "opts": []}',
        b'{"name": "n", "opts": {"bogus": 1}}',
        b'{"name": "n", "opts": {"attempts": 0}}',
        b'{"name": "n", "opts": {"priority": "high"}}',
        b'{"name": "n", "opts": {"delay": -1}}',
        b'{"name": "n", "opts": {"delay": "5s"}}',
        b'{"name": "n", "opts": {"backoff": {"type": "fixed", "delay": -5}}}',
        b'{"name": "n", "opts": {"repeat": "often"}}',
        b'{"name": "n", "opts": {"group": "g"}}',
        b'{"name": "n", "opts": {"deduplication": true}}',
        b'{"name": "n", "opts": {"lifo": "yes"}}',
    ],
)
def test_add_job_rejects_bad_input(client: httpx.Client, queue: str, body: bytes) -> None:
    push(client, queue)
    resp = client.post(f"/api/queues/{queue}/jobs", content=body)
    api_error(resp, 400, "BAD_REQUEST")
    assert counts(client, queue) == {**NO_COUNTS, "waiting": 1}


def test_add_repeating_job_with_a_job_id(client: httpx.Client, queue: str) -> None:
    """The id names the first occurrence (the job server accepts the same, as the
    reference page's push example does)."""
    job_id = f"daily-{queue}"
    body = {"name": "n", "opts": {"repeat": {"every": 1000}, "jobId": job_id}}
    created = client.post(f"/api/queues/{queue}/jobs", json=body)
    assert created.status_code == 201, created.text
    assert created.json()["data"]["id"] == job_id
    assert job_of(client, queue, job_id)["opts"]["repeat"] == {"every": 1000}


# ----- jobs: detail, children, flows ---------------------------------------------------------


def test_job_detail_and_not_found(client: httpx.Client, queue: str) -> None:
    job_id = push(client, queue, name="n", data={"x": 1})
    job = job_of(client, queue, job_id)
    assert job["id"] == job_id and job["data"] == {"x": 1}
    missing = f"missing-{uuid.uuid4().hex}"
    api_error(
        client.get(f"/api/queues/{queue}/jobs/{missing}"),
        404,
        "NOT_FOUND",
        f"Job {missing} not found",
    )


def test_job_under_another_queues_path_is_not_found(client: httpx.Client, queue: str) -> None:
    job_id = push(client, queue)
    other = f"{queue}-other"
    push(client, other)
    base = f"/api/queues/{other}/jobs/{job_id}"
    api_error(client.get(base), 404, "NOT_FOUND")
    api_error(client.get(f"{base}/children"), 404, "NOT_FOUND")
    api_error(client.patch(base, json={"data": 1}), 404, "NOT_FOUND")
    api_error(client.delete(base), 404, "NOT_FOUND")
    for verb in ("retry", "promote", "cancel"):
        api_error(client.post(f"{base}/{verb}"), 404, "NOT_FOUND")
    assert job_of(client, queue, job_id)["state"] == "waiting"


def test_children_and_parent_links(client: httpx.Client, queue: str) -> None:
    other = f"{queue}-deps"
    dep1 = push(client, queue, data="dep1")
    dep2 = push(client, other, data="dep2")
    parent = push(client, queue, data="parent", dependsOn=[dep1, dep2])

    p = job_of(client, queue, parent)
    assert p["state"] == "waiting-children"
    assert p["childrenIds"] == [dep1, dep2]
    assert p["pendingChildrenCount"] == 2
    assert p["parentId"] is None

    kids = api_data(client.get(f"/api/queues/{queue}/jobs/{parent}/children"))
    assert [check_job(k)["id"] for k in kids] == [dep1, dep2]
    assert [k["queueName"] for k in kids] == [queue, other]
    for kid in kids:
        assert kid["parentId"] == parent
        assert kid["parentQueueName"] == queue
    assert api_data(client.get(f"/api/queues/{queue}/jobs/{dep1}/children")) == []

    ack(client, dep1, take(client, queue, dep1))
    assert job_of(client, queue, parent)["pendingChildrenCount"] == 1
    ack(client, dep2, take(client, other, dep2))
    assert job_of(client, queue, parent)["state"] == "waiting"


def test_flows_list_parents_by_state(client: httpx.Client, queue: str) -> None:
    dep = push(client, queue)
    parent = push(client, queue, dependsOn=[dep])

    def flow_ids(**params: str) -> list[str]:
        return [check_job(j)["id"] for j in api_data(client.get("/api/flows", params=params))]

    assert parent in flow_ids()
    assert dep not in flow_ids()
    assert parent in flow_ids(state="waiting-children")
    assert parent not in flow_ids(state="completed")
    ack(client, dep, take(client, queue, dep))
    token = take(client, queue, parent)
    ack(client, parent, token)
    assert parent in flow_ids(state="completed")
    assert parent not in flow_ids(state="waiting-children")
    api_error(client.get("/api/flows", params={"state": "bogus"}), 400, "BAD_REQUEST")


# ----- hopper extensions: job logs, queue limits, workers -----------------------------------


def test_job_logs_in_the_detail_and_their_own_route(
    server: Server, client: httpx.Client, queue: str
) -> None:
    job_id = push(client, queue)
    assert job_of(client, queue, job_id)["logs"] == []
    assert api_page(client.get(f"/api/queues/{queue}/jobs/{job_id}/logs")) == (
        [],
        {"total": 0, "start": 0, "end": 1000},
    )
    with Conn(server.tcp_port) as c:
        c.call_ok("AddLog", id=job_id, message="starting")
        c.call_ok("AddLog", id=job_id, message="slow disk", level="warn")
        c.call_ok("AddLog", id=job_id, message="gave up", level="error")
    assert job_of(client, queue, job_id)["logs"] == ["starting", "slow disk", "gave up"]
    lines, meta = api_page(client.get(f"/api/queues/{queue}/jobs/{job_id}/logs"))
    assert meta == {"total": 3, "start": 0, "end": 1000}
    assert [(x["seq"], x["level"], x["message"]) for x in lines] == [
        (1, "info", "starting"),
        (2, "warn", "slow disk"),
        (3, "error", "gave up"),
    ]
    for line in lines:
        assert set(line) == {"seq", "level", "message", "timestamp"}
        assert abs(iso_ms(line["timestamp"]) - time.time() * 1000) < 60_000
    lines, meta = api_page(
        client.get(f"/api/queues/{queue}/jobs/{job_id}/logs", params={"start": 1, "end": 2})
    )
    assert [x["message"] for x in lines] == ["slow disk"]
    assert meta == {"total": 3, "start": 1, "end": 2}
    lines, meta = api_page(
        client.get(f"/api/queues/{queue}/jobs/{job_id}/logs", params={"start": 5, "end": 5})
    )
    assert lines == [] and meta["total"] == 3
    # a list leaves `logs` empty (the lines are the detail's)
    listed, _ = api_page(client.get(f"/api/queues/{queue}/jobs"))
    assert [j["logs"] for j in listed] == [[]]


def test_job_logs_route_errors(client: httpx.Client, queue: str) -> None:
    job_id = push(client, queue)
    base = f"/api/queues/{queue}/jobs"
    api_error(client.get(f"{base}/nope/logs"), 404, "NOT_FOUND", "Job nope not found")
    api_error(client.get(f"/api/queues/{queue}-other/jobs/{job_id}/logs"), 404, "NOT_FOUND")
    api_error(client.get(f"{base}/{job_id}/logs", params={"start": "x"}), 400, "BAD_REQUEST")
    api_error(
        client.get(f"{base}/{job_id}/logs", params={"start": 0, "end": 1001}),
        400,
        "BAD_REQUEST",
        "Page size too large (max 1000)",
    )
    resp = client.post(f"{base}/{job_id}/logs")
    api_error(resp, 405, "METHOD_NOT_ALLOWED")
    assert resp.headers["allow"] == "GET, HEAD, OPTIONS"


def test_queue_detail_shows_its_limits(server: Server, client: httpx.Client, queue: str) -> None:
    first = push(client, queue)
    assert api_data(client.get(f"/api/queues/{queue}"))["limits"] == {
        "rateLimit": None,
        "rateLimitTtl": -2,
        "concurrency": None,
        "concurrencyMaxed": False,
    }
    with Conn(server.tcp_port) as c:
        c.call_ok("RateLimit", queue=queue, limit=5, duration=60_000)
        c.call_ok("SetConcurrency", queue=queue, limit=1)
    take(client, queue, first)
    limits = api_data(client.get(f"/api/queues/{queue}"))["limits"]
    assert limits == {
        "rateLimit": {"max": 5, "duration": 60_000, "expiresAt": None},
        "rateLimitTtl": 0,
        "concurrency": 1,
        "concurrencyMaxed": True,
    }
    # an extension of the detail only: the summary is the reference's
    summary = next(s for s in api_data(client.get("/api/queues")) if s["name"] == queue)
    assert "limits" not in summary
    with Conn(server.tcp_port) as c:
        c.call_ok("RateLimit", queue=queue, limit=1, duration=1000, ttl=60_000)
        c.call_ok("ClearConcurrency", queue=queue)
    limits = api_data(client.get(f"/api/queues/{queue}"))["limits"]
    assert limits["rateLimit"]["max"] == 1 and ISO.match(limits["rateLimit"]["expiresAt"])
    assert limits["concurrency"] is None and limits["concurrencyMaxed"] is False
    with Conn(server.tcp_port) as c:
        c.call_ok("RateLimitClear", queue=queue)
    assert api_data(client.get(f"/api/queues/{queue}"))["limits"]["rateLimit"] is None


def test_workers_registry(server: Server, client: httpx.Client, queue: str) -> None:
    with Conn(server.tcp_port) as c:
        reg = c.call_ok(
            "RegisterWorker", name="resizer", queues=[queue], concurrency=4, hostname="h1", pid=42
        )["data"]
        c.call_ok("Heartbeat", id=reg["workerId"], activeJobs=2, processed=7, failed=1)
        listed = api_data(client.get("/api/workers", params={"queue": queue}))
        assert len(listed) == 1
        w = listed[0]
        assert {k: w[k] for k in ("id", "name", "queues", "concurrency", "hostname", "pid")} == {
            "id": reg["workerId"],
            "name": "resizer",
            "queues": [queue],
            "concurrency": 4,
            "hostname": "h1",
            "pid": 42,
        }
        assert (w["activeJobs"], w["processedJobs"], w["failedJobs"]) == (2, 7, 1)
        assert w["status"] == "live"
        assert ISO.match(w["registeredAt"]) and ISO.match(w["lastHeartbeatAt"])
        assert reg["workerId"] in {x["id"] for x in api_data(client.get("/api/workers"))}
        assert api_data(client.get("/api/workers", params={"queue": f"{queue}-x"})) == []
    # the worker goes with its connection
    deadline = time.monotonic() + 5
    while api_data(client.get("/api/workers", params={"queue": queue})):
        assert time.monotonic() < deadline, "the worker outlived its connection"
        time.sleep(0.02)


def test_schedulers_listed_with_their_next_run(
    server: Server, client: httpx.Client, queue: str
) -> None:
    other = f"{queue}-other"
    five, every, elsewhere = f"{queue}-five", f"{queue}-every", f"{queue}-elsewhere"
    with Conn(server.tcp_port) as c:
        try:
            c.call_ok("Cron", name=five, queue=queue, data={"x": 1}, schedule="*/5 * * * *")
            c.call_ok(
                "Cron",
                name=every,
                queue=queue,
                data=[2],
                repeatEvery=3_600_000,
                jobName="tick",
                priority=3,
                maxLimit=10,
                preventOverlap=False,
                skipIfNoWorker=True,
                jobOptions={"maxAttempts": 4, "removeOnComplete": True},
            )
            c.call_ok("Cron", name=elsewhere, queue=other, schedule="@daily")
            listed = api_data(client.get("/api/schedulers", params={"queue": queue}))
            assert [s["name"] for s in listed] == [five, every]
            first, second = listed
            assert set(first) == SCHEDULER_FIELDS
            # (a five-minute mark may pass during the test: its run is not asserted)
            assert {k: v for k, v in first.items() if k not in ("nextRunAt", "executions")} == {
                "name": five,
                "queueName": queue,
                "jobName": "default",
                "data": {"x": 1},
                "schedule": "*/5 * * * *",
                "repeatEvery": None,
                "timezone": None,
                "priority": 0,
                "maxLimit": None,
                "uniqueKey": None,
                "skipMissedOnRestart": True,
                "skipIfNoWorker": False,
                "preventOverlap": True,
                "jobOptions": None,
            }
            # the next multiple of five minutes
            next_ms = iso_ms(first["nextRunAt"])
            assert next_ms % 300_000 == 0 and 0 < next_ms - time.time() * 1000 <= 300_000
            keys = ("jobName", "data", "repeatEvery", "priority", "executions")
            assert {k: second[k] for k in keys} == {
                "jobName": "tick",
                "data": [2],
                "repeatEvery": 3_600_000,
                "priority": 3,
                "executions": 0,
            }
            assert (second["maxLimit"], second["preventOverlap"], second["skipIfNoWorker"]) == (
                10,
                False,
                True,
            )
            assert second["jobOptions"] == {"maxAttempts": 4, "removeOnComplete": True}
            assert abs(iso_ms(second["nextRunAt"]) - time.time() * 1000 - 3_600_000) < 60_000
            everything = {s["name"] for s in api_data(client.get("/api/schedulers"))}
            assert {five, every, elsewhere} <= everything
            assert [
                s["name"] for s in api_data(client.get("/api/schedulers", params={"queue": other}))
            ] == [elsewhere]
            assert api_data(client.get("/api/schedulers", params={"queue": f"{queue}-x"})) == []
            # a removed scheduler is no longer listed
            c.call_ok("CronDelete", name=five)
            listed = api_data(client.get("/api/schedulers", params={"queue": queue}))
            assert [s["name"] for s in listed] == [every]
        finally:
            for name in (five, every, elsewhere):
                c.call("CronDelete", name=name)


def test_cluster_view_outside_cluster_mode_is_this_server(server: Server) -> None:
    cluster = api_data(server.client.get("/api/cluster"))
    assert set(cluster) == {"mode", "namespace", "servedBy", "now", "slots", "brokers"}
    assert (cluster["mode"], cluster["namespace"], cluster["slots"]) == ("single", None, [])
    [me] = cluster["brokers"]
    assert me["id"] == cluster["servedBy"] and me["id"]
    assert me["http"] == server.url.removeprefix("http://")
    assert me["tcp"] == f"127.0.0.1:{server.tcp_port}"
    assert (me["status"], me["slots"]) == ("live", [])
    assert me["lastSeenAt"] == cluster["now"]
    assert iso_ms(me["startedAt"]) <= iso_ms(cluster["now"]) <= time.time() * 1000 + 1000


def test_extension_routes_are_documented(client: httpx.Client) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    assert "get" in paths["/api/queues/{name}/jobs/{id}/logs"]
    assert "get" in paths["/api/workers"]
    assert "get" in paths["/api/schedulers"]
    assert "get" in paths["/api/cluster"]


# ----- jobs: actions ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("verb", "refused"),
    [
        ("retry", ("waiting", "delayed", "active", "waiting-children")),
        ("promote", ("waiting", "active", "completed", "failed", "waiting-children")),
        ("cancel", ("waiting", "delayed", "completed", "failed", "waiting-children")),
    ],
)
def test_job_action_state_checks(
    client: httpx.Client, queue: str, verb: str, refused: tuple[str, ...]
) -> None:
    ids = seed_states(client, queue)
    for state in refused:
        resp = client.post(f"/api/queues/{queue}/jobs/{ids[state]}/{verb}")
        api_error(resp, 400, "BAD_REQUEST", f'Cannot {verb} job in state "{state}"')
    assert counts(client, queue) == one_each()
    missing = uuid.uuid4().hex
    api_error(client.post(f"/api/queues/{queue}/jobs/{missing}/{verb}"), 404, "NOT_FOUND")


def test_retry_a_failed_and_a_completed_job(client: httpx.Client, queue: str) -> None:
    ids = seed_states(client, queue)
    for state in ("failed", "completed"):
        resp = client.post(f"/api/queues/{queue}/jobs/{ids[state]}/retry")
        assert api_data(resp) == {"retried": True}
        job = job_of(client, queue, ids[state])
        assert job["state"] == "waiting"
        assert job["attemptsMade"] == 0
        assert job["failedReason"] is None and job["returnvalue"] is None
        assert get_job(client, ids[state])["state"] == "waiting"


def test_promote_a_delayed_job(client: httpx.Client, queue: str) -> None:
    job_id = push(client, queue, delay=3_600_000)
    assert api_data(client.post(f"/api/queues/{queue}/jobs/{job_id}/promote")) == {"promoted": True}
    job = job_of(client, queue, job_id)
    assert job["state"] == "waiting" and job["delayUntil"] is None
    assert pull(client, queue)[0]["id"] == job_id


def test_cancel_an_active_job(client: httpx.Client, queue: str) -> None:
    job_id = push(client, queue, maxAttempts=3)
    token = take(client, queue, job_id)
    assert api_data(client.post(f"/api/queues/{queue}/jobs/{job_id}/cancel")) == {"cancelled": True}
    job = job_of(client, queue, job_id)
    assert job["state"] == "failed"
    assert job["failedReason"] == "Job cancelled"
    # the worker's lease is gone: its ack is refused
    expect_error(client.post(f"/jobs/{job_id}/ack", json={"token": token}), 400)


def test_opts_delay_is_only_the_given_delay(client: httpx.Client, queue: str) -> None:
    """`opts` are the options the job was pushed with (the reference stores them as
    given): a backoff, a retry or a promote moves the run time, never `opts.delay`."""
    plain = push(client, queue, maxAttempts=2, backoff=3_600_000)
    fail(client, plain, take(client, queue, plain))
    backing_off = job_of(client, queue, plain)
    assert backing_off["state"] == "delayed" and "delay" not in backing_off["opts"]
    api_data(client.post(f"/api/queues/{queue}/jobs/{plain}/promote"))
    fail(client, plain, take(client, queue, plain))
    api_data(client.post(f"/api/queues/{queue}/jobs/{plain}/retry"))
    assert "delay" not in job_of(client, queue, plain)["opts"]
    delayed = push(client, queue, delay=3_600_000)
    api_data(client.post(f"/api/queues/{queue}/jobs/{delayed}/promote"))
    promoted = job_of(client, queue, delayed)
    assert promoted["state"] == "waiting" and promoted["opts"]["delay"] == 3_600_000


def test_patch_data_and_priority(client: httpx.Client, queue: str) -> None:
    job_id = push(client, queue, data={"v": 1}, priority=1)
    url = f"/api/queues/{queue}/jobs/{job_id}"
    job = check_job(api_data(client.patch(url, json={"data": {"v": 2}})))
    assert job["data"] == {"v": 2}
    assert job["opts"]["priority"] == 1
    job = api_data(client.patch(url, json={"opts": {"priority": 9}}))
    assert job["opts"]["priority"] == 9 and job["data"] == {"v": 2}
    job = api_data(client.patch(url, json={"data": [3], "opts": {"priority": 4}}))
    assert job["data"] == [3] and job["opts"]["priority"] == 4
    served = get_job(client, job_id)
    assert served["data"] == [3] and served["priority"] == 4
    assert job_of(client, queue, job_id) == job


def test_patch_delayed_job_keeps_its_state(client: httpx.Client, queue: str) -> None:
    job_id = push(client, queue, delay=3_600_000)
    job = api_data(client.patch(f"/api/queues/{queue}/jobs/{job_id}", json={"data": "new"}))
    assert job["state"] == "delayed" and job["data"] == "new"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{}", "No valid fields to update"),
        (b'{"opts": {}}', "No valid fields to update"),
        (b'{"other": 1}', "No valid fields to update"),
        (b"{nope", None),
        (b"", None),
        (b"[1]", None),
        (b'{"opts": []}', None),
        (b'{"opts": {"priority": "x"}}', None),
        (b'{"opts": {"priority": 1.5}}', None),
    ],
)
def test_patch_rejects_bad_bodies(
    client: httpx.Client, queue: str, body: bytes, message: str | None
) -> None:
    job_id = push(client, queue, data={"v": 1})
    resp = client.patch(f"/api/queues/{queue}/jobs/{job_id}", content=body)
    api_error(resp, 400, "BAD_REQUEST", message)
    assert get_job(client, job_id)["data"] == {"v": 1}


def test_patch_refused_for_active_job(client: httpx.Client, queue: str) -> None:
    job_id = push(client, queue, data={"v": 1})
    take(client, queue, job_id)
    resp = client.patch(f"/api/queues/{queue}/jobs/{job_id}", json={"data": {"v": 2}})
    api_error(resp, 400, "BAD_REQUEST", "Cannot edit an active job")
    assert get_job(client, job_id)["data"] == {"v": 1}


def test_delete_job(client: httpx.Client, queue: str) -> None:
    ids = seed_states(client, queue)
    for state in ("waiting", "delayed", "completed", "failed"):
        url = f"/api/queues/{queue}/jobs/{ids[state]}"
        assert api_data(client.delete(url)) == {"removed": True}
        api_error(client.get(url), 404, "NOT_FOUND")
        expect_error(client.get(f"/jobs/{ids[state]}"), 404)
        api_error(client.delete(url), 404, "NOT_FOUND")
    # an active job must be cancelled, not deleted
    api_error(client.delete(f"/api/queues/{queue}/jobs/{ids['active']}"), 400, "BAD_REQUEST")
    assert counts(client, queue)["active"] == 1


# ----- groups, search ------------------------------------------------------------------------


def test_groups_with_counts(client: httpx.Client, queue: str) -> None:
    first = push(client, queue, groupId="g1")
    push(client, queue, groupId="g1")
    push(client, queue, groupId="g1")
    push(client, queue, groupId="g2")
    push(client, queue)
    take(client, queue, first)
    groups = api_data(client.get(f"/api/queues/{queue}/groups"))
    assert sorted(groups, key=lambda g: g["groupId"]) == [
        {"groupId": "g1", "activeCount": 1, "waitingCount": 2},
        {"groupId": "g2", "activeCount": 0, "waitingCount": 1},
    ]
    api_error(client.get(f"/api/queues/{queue}-nope/groups"), 404, "NOT_FOUND")


def test_search_job_by_id(client: httpx.Client, queue: str) -> None:
    job_id = push(client, queue, data={"x": 1})
    for params in ({"q": job_id}, {"q": job_id, "type": "job"}):
        assert check_job(api_data(client.get("/api/search", params=params)))["id"] == job_id
    assert api_data(client.get("/api/search", params={"q": uuid.uuid4().hex})) is None


def test_search_queues_by_substring(client: httpx.Client, queue: str) -> None:
    push(client, queue)
    push(client, f"{queue}-second")
    found = api_data(client.get("/api/search", params={"q": queue[2:], "type": "queue"}))
    assert sorted(check_summary(s)["name"] for s in found) == [queue, f"{queue}-second"]
    none = api_data(client.get("/api/search", params={"q": uuid.uuid4().hex, "type": "queue"}))
    assert none == []


def test_search_payload_text(client: httpx.Client, queue: str) -> None:
    needle = f"needle-{uuid.uuid4().hex[:8]}"
    hit = push(client, queue, data={"email": f"{needle}@example.com", "n": 1})
    done = push(client, queue, data={"note": f"also {needle}"})
    ack(client, hit, take(client, queue, hit))
    push(client, queue, data={"email": "other@example.com"})
    push(client, f"{queue}-x", data={"email": f"{needle}@example.com"})
    found = api_data(
        client.get("/api/search", params={"q": needle, "type": "payload", "queue": queue})
    )
    assert sorted(check_job(j)["id"] for j in found) == sorted([hit, done])
    assert {j["queueName"] for j in found} == {queue}


def test_search_payload_ignores_case_and_covers_every_state(
    client: httpx.Client, queue: str
) -> None:
    """As the reference's stores (lower-cased text, ILIKE): case does not matter, and
    jobs of every state are searched."""
    ids = seed_states(client, queue)  # data {"k": "<state>"}, the parent's {"k": "parent"}
    found = api_data(
        client.get("/api/search", params={"q": '"K"', "type": "payload", "queue": queue})
    )
    assert sorted(j["id"] for j in found) == sorted(ids.values())
    assert {j["state"] for j in found} == set(STATES)
    one = api_data(
        client.get("/api/search", params={"q": '"PaReNt"', "type": "payload", "queue": queue})
    )
    assert [j["id"] for j in one] == [ids["waiting-children"]]


@pytest.mark.parametrize(
    ("params", "status", "code"),
    [
        ({}, 400, "BAD_REQUEST"),
        ({"q": ""}, 400, "BAD_REQUEST"),
        ({"q": "x", "type": "name"}, 400, "BAD_REQUEST"),
        ({"q": "x", "type": "bogus"}, 400, "BAD_REQUEST"),
        ({"q": "x", "type": "payload"}, 400, "BAD_REQUEST"),
        ({"q": "x", "type": "payload", "queue": ""}, 400, "BAD_REQUEST"),
        ({"q": "x", "type": "payload", "queue": "no-such-queue-x"}, 404, "NOT_FOUND"),
    ],
)
def test_search_errors(
    client: httpx.Client, params: dict[str, str], status: int, code: str
) -> None:
    api_error(client.get("/api/search", params=params), status, code)


def test_search_payload_requires_queue_message(client: httpx.Client) -> None:
    resp = client.get("/api/search", params={"q": "x", "type": "payload"})
    api_error(resp, 400, "BAD_REQUEST", "queue parameter is required for payload search")


# ----- metrics --------------------------------------------------------------------------------


def _finish_some(client: httpx.Client, queue: str) -> None:
    for _ in range(2):
        job_id = push(client, queue, name="alpha")
        ack(client, job_id, take(client, queue, job_id))
    job_id = push(client, queue, name="beta", maxAttempts=1)
    fail(client, job_id, take(client, queue, job_id))


def _totals(buckets: list[dict[str, Any]], name: str) -> tuple[int, int]:
    mine = [b for b in buckets if b["jobName"] == name]
    return sum(b["completedCount"] for b in mine), sum(b["failedCount"] for b in mine)


def _pushed(buckets: list[dict[str, Any]], name: str) -> int:
    return sum(b["pushedCount"] for b in buckets if b["jobName"] == name)


@pytest.mark.parametrize(("granularity", "step_ms"), [("minute", 60_000), ("hour", 3_600_000)])
def test_queue_metrics_buckets(
    client: httpx.Client, queue: str, granularity: str, step_ms: int
) -> None:
    _finish_some(client, queue)
    buckets = api_data(
        client.get(f"/api/queues/{queue}/metrics", params={"granularity": granularity})
    )
    assert buckets
    for b in buckets:
        assert set(b) == BUCKET_FIELDS, b
        assert b["queueName"] == queue and b["granularity"] == granularity
        assert iso_ms(b["periodStart"]) % step_ms == 0
        assert b["minProcessMs"] <= b["maxProcessMs"] <= b["totalProcessMs"]
    starts = [iso_ms(b["periodStart"]) for b in buckets]
    assert starts == sorted(starts)
    assert _totals(buckets, "__all__") == (2, 1)
    assert _totals(buckets, "alpha") == (2, 0)
    assert _totals(buckets, "beta") == (0, 1)
    assert (_pushed(buckets, "__all__"), _pushed(buckets, "alpha"), _pushed(buckets, "beta")) == (
        3,
        2,
        1,
    )


def test_queue_metrics_count_pushes_of_jobs_not_yet_finished(
    client: httpx.Client, queue: str
) -> None:
    for _ in range(30):
        push(client, queue, name="backlog")
    buckets = api_data(client.get(f"/api/queues/{queue}/metrics"))
    assert _pushed(buckets, "__all__") == _pushed(buckets, "backlog") == 30
    assert _totals(buckets, "__all__") == (0, 0)
    assert all(b["minProcessMs"] == b["maxProcessMs"] == 0 for b in buckets)


def test_queue_metrics_default_granularity_and_range(client: httpx.Client, queue: str) -> None:
    _finish_some(client, queue)
    url = f"/api/queues/{queue}/metrics"
    default = api_data(client.get(url))
    assert {b["granularity"] for b in default} == {"minute"}
    now = time.time()
    around = {
        "from": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now - 600)),
        "to": time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(now + 60)),
    }
    assert _totals(api_data(client.get(url, params=around)), "__all__") == (2, 1)
    past = {"from": "2020-01-01T00:00:00Z", "to": "2020-01-01T01:00:00.000Z"}
    assert api_data(client.get(url, params=past)) == []


def test_queue_metrics_windows_given_by_one_end(client: httpx.Client, queue: str) -> None:
    """Only `from`: up to now (the reference's default `to`); a `from` in the future
    with no `to` is an empty window (200, as the reference), not an error; only `to`:
    the hour before it."""
    _finish_some(client, queue)
    url = f"/api/queues/{queue}/metrics"
    now = time.time()

    def stamp(t: float) -> str:
        return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))

    assert _totals(api_data(client.get(url, params={"from": stamp(now - 600)})), "__all__") == (
        2,
        1,
    )
    assert api_data(client.get(url, params={"from": stamp(now + 3600)})) == []
    assert _totals(api_data(client.get(url, params={"to": stamp(now + 60)})), "__all__") == (2, 1)
    assert api_data(client.get(url, params={"to": stamp(now - 7200)})) == []
    # before 1970: no buckets there, and no error either
    old = {"from": "1960-01-01T00:00:00Z"}
    assert _totals(api_data(client.get(url, params=old)), "__all__") == (2, 1)
    assert api_data(client.get(url, params={"to": "1970-01-01T00:00:00Z"})) == []


@pytest.mark.parametrize(
    "params",
    [
        {"granularity": "day"},
        {"granularity": ""},
        {"from": "yesterday"},
        {"to": "2020-13-01T00:00:00Z"},
        {"from": "2020-01-01T00:00:00"},  # no time zone
        {"from": "2020-01-02T00:00:00Z", "to": "2020-01-01T00:00:00Z"},
    ],
)
def test_queue_metrics_rejects_bad_params(
    client: httpx.Client, queue: str, params: dict[str, str]
) -> None:
    push(client, queue)
    api_error(client.get(f"/api/queues/{queue}/metrics", params=params), 400, "BAD_REQUEST")


def test_queue_metrics_of_unknown_queue_is_not_found(client: httpx.Client, queue: str) -> None:
    api_error(client.get(f"/api/queues/{queue}/metrics"), 404, "NOT_FOUND")


def test_sparklines_have_sixty_points_and_their_times(client: httpx.Client, queue: str) -> None:
    idle = f"{queue}-idle"
    push(client, idle)
    _finish_some(client, queue)
    resp = client.get("/api/metrics/sparklines")
    assert resp.status_code == 200
    body = resp.json()
    assert set(body) == {"data", "meta"}
    assert set(body["meta"]) == {"granularity", "periodStarts", "pushed"}
    series = body["data"]
    assert isinstance(series, dict)
    for name, points in series.items():
        assert len(points) == 60, name
        assert all(isinstance(p, int) and p >= 0 for p in points), name
    assert sum(series[queue]) == 3
    assert series[idle] == [0] * 60
    # Pushes per minute beside the finishes (extension): the idle queue's one push shows.
    pushed = body["meta"]["pushed"]
    assert set(pushed) == set(series)
    assert all(len(points) == 60 for points in pushed.values())
    assert sum(pushed[queue]) == 3 and sum(pushed[idle]) == 1
    starts = [iso_ms(t) for t in body["meta"]["periodStarts"]]
    assert len(starts) == 60
    assert all(b - a == 60_000 for a, b in itertools.pairwise(starts))
    assert starts[0] % 60_000 == 0
    now = time.time() * 1000
    assert starts[-1] <= now < starts[-1] + 120_000


def test_metrics_status(client: httpx.Client) -> None:
    assert api_data(client.get("/api/metrics/status")) == {"enabled": True}


# ----- one engine, two APIs -------------------------------------------------------------------


def test_same_job_in_both_apis(client: httpx.Client, queue: str) -> None:
    job_id = push(client, queue, name="both", data={"to": "x"}, priority=3, tags=["t"])
    served = get_job(client, job_id)
    job = job_of(client, queue, job_id)
    assert job["id"] == served["id"] == job_id
    assert job["name"] == served["name"] == "both"
    assert job["queueName"] == served["queue"] == queue
    assert job["data"] == served["data"]
    assert job["state"] == served["state"] == "waiting"
    assert iso_ms(job["createdAt"]) == served["createdAt"]
    assert job["opts"]["priority"] == served["priority"] == 3

    token = take(client, queue, job_id)
    active = job_of(client, queue, job_id)
    assert active["state"] == "active"
    assert iso_ms(active["processedAt"]) == get_job(client, job_id)["startedAt"]
    ack(client, job_id, token, {"sent": True})
    done = job_of(client, queue, job_id)
    served = get_job(client, job_id)
    assert done["state"] == served["state"] == "completed"
    assert done["returnvalue"] == served["result"] == {"sent": True}
    assert iso_ms(done["completedAt"]) == served["completedAt"]

    added = api_data(client.post(f"/api/queues/{queue}/jobs", json={"name": "m"}), 201)
    assert get_job(client, added["id"])["id"] == added["id"]
    assert pull(client, queue)[0]["id"] == added["id"]


def test_dead_lettered_job_is_failed_with_reason(client: httpx.Client, queue: str) -> None:
    job_id = push(client, queue, maxAttempts=2, backoff=0)
    fail(client, job_id, take(client, queue, job_id), "first")
    retrying = job_of(client, queue, job_id)
    assert retrying["state"] in ("waiting", "delayed")
    assert retrying["attemptsMade"] == 1
    token = take(client, queue, job_id)
    fail(client, job_id, token, "SMTP refused")
    job = job_of(client, queue, job_id)
    assert job["state"] == "failed"
    assert job["failedReason"] == "SMTP refused"
    assert job["attemptsMade"] == 2
    assert job["failedAt"] is not None and ISO.match(job["failedAt"])
    assert job["stacktrace"]
    failed, meta = api_page(client.get(f"/api/queues/{queue}/jobs", params={"state": "failed"}))
    assert [j["id"] for j in failed] == [job_id] and meta["total"] == 1


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/pause"),
        ("POST", "/resume"),
        ("POST", "/clean"),
        ("POST", "/retry"),
        ("POST", "/jobs"),
        ("PATCH", "/jobs/{id}"),
    ],
)
def test_malformed_json_is_bad_request(
    client: httpx.Client, queue: str, method: str, path: str
) -> None:
    job_id = push(client, queue)
    url = f"/api/queues/{queue}" + path.format(id=job_id)
    for body in (b"{", b'{"a": }', b"\xff\xfe", b"nul"):
        resp = client.request(
            method, url, content=body, headers={"content-type": "application/json"}
        )
        api_error(resp, 400, "BAD_REQUEST")


# ----- matrices: each on its own server -----------------------------------------------------


def _mutations(queue: str, ids: dict[str, str]) -> list[tuple[str, str, Any]]:
    job = f"/api/queues/{queue}/jobs"
    return [
        ("POST", f"/api/queues/{queue}/pause", None),
        ("POST", f"/api/queues/{queue}/pause", {"jobName": "todo"}),
        ("POST", f"/api/queues/{queue}/resume", None),
        ("POST", f"/api/queues/{queue}/drain", None),
        ("POST", f"/api/queues/{queue}/clean", {"state": "completed", "grace": 0}),
        ("POST", f"/api/queues/{queue}/retry", {"state": "failed"}),
        ("POST", f"/api/queues/{queue}/promote", None),
        ("POST", f"/api/queues/{queue}/failures/retry", {"reason": "exploded"}),
        ("DELETE", f"/api/queues/{queue}?force=true", None),
        ("POST", job, {"name": "new"}),
        ("POST", f"{job}/{ids['failed']}/retry", None),
        ("POST", f"{job}/{ids['delayed']}/promote", None),
        ("POST", f"{job}/{ids['active']}/cancel", None),
        ("PATCH", f"{job}/{ids['waiting']}", {"data": {"changed": True}}),
        ("DELETE", f"{job}/{ids['waiting']}", None),
        ("PUT", f"/api/queues/{queue}", None),
    ]


def _reads(queue: str, ids: dict[str, str]) -> list[str]:
    return [
        "/api/queues",
        f"/api/queues/{queue}",
        f"/api/queues/{queue}/jobs?state=failed",
        f"/api/queues/{queue}/jobs/{ids['waiting-children']}",
        f"/api/queues/{queue}/jobs/{ids['waiting-children']}/children",
        f"/api/queues/{queue}/groups",
        f"/api/queues/{queue}/failures",
        "/api/flows",
        f"/api/search?q={ids['waiting']}",
        f"/api/queues/{queue}/metrics",
        "/api/metrics/sparklines",
        "/api/metrics/status",
        "/api/cluster",
        "/api/config",
    ]


def _snapshot(client: httpx.Client, queue: str, ids: dict[str, str]) -> Any:
    detail = api_data(client.get(f"/api/queues/{queue}"))
    jobs = {s: job_of(client, queue, i) for s, i in ids.items()}
    return detail["counts"], detail["pausedNames"], jobs


def test_read_only_refuses_every_mutation(start_server: ServerFactory) -> None:
    server = start_server(HOPPER_DASHBOARD_READ_ONLY="1")
    client, queue = server.client, "ro"
    ids = seed_states(client, queue)
    assert api_data(client.get("/api/config")) == {"readOnly": True, "authRequired": False}
    before = _snapshot(client, queue, ids)
    for method, path, body in _mutations(queue, ids):
        kw: dict[str, Any] = {} if body is None else {"json": body}
        resp = client.request(method, path, **kw)
        api_error(resp, 403, "FORBIDDEN")
    assert _snapshot(client, queue, ids) == before
    for path in _reads(queue, ids):
        assert client.get(path).status_code == 200, path
    # the job server is not the dashboard: it still takes jobs
    push(client, queue)
    assert counts(client, queue)["waiting"] == 2


def test_auth_tokens_guard_the_management_api(start_server: ServerFactory) -> None:
    server = start_server(AUTH_TOKENS="secret")
    good = {"Authorization": "Bearer secret"}
    authed = httpx.Client(base_url=server.url, headers=good, timeout=10.0)
    anon = server.client
    try:
        queue = "guarded"
        ids = seed_states(authed, queue)
        before = _snapshot(authed, queue, ids)

        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "secret"}):
            for path in (*_reads(queue, ids)[:-1], "/api/nope"):
                resp = anon.get(path, headers=headers)
                api_error(resp, 401, "UNAUTHORIZED")
            for method, path, body in _mutations(queue, ids):
                kw: dict[str, Any] = {} if body is None else {"json": body}
                api_error(anon.request(method, path, headers=headers, **kw), 401, "UNAUTHORIZED")
        # a token in the URL is for event streams only
        api_error(anon.get("/api/queues", params={"token": "secret"}), 401, "UNAUTHORIZED")
        assert _snapshot(authed, queue, ids) == before

        for path in _reads(queue, ids):
            assert authed.get(path).status_code == 200, path
        assert api_data(anon.get("/api/config")) == {"readOnly": False, "authRequired": True}
        pre = anon.options(
            "/api/queues",
            headers={
                "Origin": "http://ui.test",
                "Access-Control-Request-Method": "GET",
                "Access-Control-Request-Headers": "authorization",
            },
        )
        assert pre.status_code == 204
        assert "authorization" in pre.headers["access-control-allow-headers"].lower()

        api_error(anon.get("/api/events"), 401, "UNAUTHORIZED")
        api_error(anon.get("/api/events?token=wrong"), 401, "UNAUTHORIZED")
        with open_events(server, "/api/events?token=secret") as stream:
            job_id = push(authed, queue)
            assert stream.expect("job:waiting", job_id)["queueName"] == queue
        with open_events(server, f"/api/queues/{queue}/events?token=secret") as stream:
            api_data(authed.post(f"/api/queues/{queue}/pause"), 200)
            assert stream.expect("queue:paused")["data"] == {"jobName": "__all__"}
        with open_events(server, "/api/events", headers=good) as stream:
            api_data(authed.post(f"/api/queues/{queue}/resume"), 200)
            stream.expect("queue:resumed")
    finally:
        authed.close()


ALLOWED = ("a", "b")


def test_allow_list_hides_other_queues_everywhere(start_server: ServerFactory) -> None:
    server = start_server(HOPPER_DASHBOARD_QUEUES=",".join(ALLOWED))
    client = server.client
    for name in ALLOWED:
        push(client, name, data={"where": name})
    hidden = seed_states(client, "c")
    secret = push(client, "c", data={"note": "topsecret"}, groupId="g")
    assert [s["name"] for s in api_data(client.get("/api/queues"))] == list(ALLOWED)

    def hidden_404(method: str, path: str, body: Any = None) -> None:
        kw: dict[str, Any] = {} if body is None else {"json": body}
        api_error(client.request(method, path, **kw), 404, "NOT_FOUND")

    for method, path, body in _mutations("c", hidden):
        if method != "PUT":
            hidden_404(method, path, body)
    for path in (
        "/api/queues/c",
        "/api/queues/c/jobs",
        "/api/queues/c/jobs?state=failed",
        f"/api/queues/c/jobs/{secret}",
        f"/api/queues/c/jobs/{hidden['waiting-children']}/children",
        "/api/queues/c/groups",
        "/api/queues/c/metrics",
        "/api/queues/c/events",
        "/api/search?q=topsecret&type=payload&queue=c",
        f"/api/queues/c/jobs/{secret}/logs",
        "/api/workers?queue=c",
        "/api/schedulers?queue=c",
    ):
        hidden_404("GET", path)
    # a hidden job through an allowed queue's path
    for path in (
        f"/api/queues/a/jobs/{secret}",
        f"/api/queues/a/jobs/{secret}/children",
        f"/api/queues/a/jobs/{secret}/logs",
    ):
        hidden_404("GET", path)
    hidden_404("PATCH", f"/api/queues/a/jobs/{secret}", {"data": 1})
    hidden_404("DELETE", f"/api/queues/a/jobs/{secret}")
    hidden_404("POST", f"/api/queues/a/jobs/{hidden['failed']}/retry")

    assert api_data(client.get("/api/search", params={"q": secret})) is None
    assert api_data(client.get("/api/search", params={"q": "c", "type": "queue"})) == []
    found = api_data(client.get("/api/search", params={"q": "a", "type": "queue"}))
    assert [s["name"] for s in found] == ["a"]
    assert hidden["waiting-children"] not in [j["id"] for j in api_data(client.get("/api/flows"))]
    assert set(client.get("/api/metrics/sparklines").json()["data"]) == set(ALLOWED)
    # nothing in c changed, and the allowed queues still work
    assert get_job(client, secret)["state"] == "waiting"
    for state, job_id in hidden.items():
        assert get_job(client, job_id)["state"] == state
    assert api_data(client.get("/api/queues/a"))["counts"]["waiting"] == 1
    added = api_data(client.post("/api/queues/b/jobs", json={"name": "ok"}), 201)
    assert added["queueName"] == "b"
    api_error(client.post("/api/queues/c/jobs", json={"name": "no"}), 404, "NOT_FOUND")
    # workers: only the allowed queues show, and a worker of hidden queues alone not at all
    with Conn(server.tcp_port) as c:
        c.call_ok("RegisterWorker", name="both", queues=["a", "c"], workerId="w-both")
        c.call_ok("RegisterWorker", name="hidden", queues=["c"], workerId="w-hidden")
        listed = api_data(client.get("/api/workers"))
        assert [(w["name"], w["queues"]) for w in listed] == [("both", ["a"])]
        # schedulers: only those of the allowed queues
        c.call_ok("Cron", name="shown", queue="a", schedule="@daily")
        c.call_ok("Cron", name="secret", queue="c", schedule="@daily")
        listed = api_data(client.get("/api/schedulers"))
        assert [(s["name"], s["queueName"]) for s in listed] == [("shown", "a")]


def test_metrics_off(start_server: ServerFactory) -> None:
    server = start_server(HOPPER_DASHBOARD_METRICS="0")
    client, queue = server.client, "m"
    job_id = push(client, queue)
    ack(client, job_id, take(client, queue, job_id))
    for path in (f"/api/queues/{queue}/metrics", "/api/metrics/sparklines"):
        api_error(client.get(path), 400, "METRICS_DISABLED")
    api_error(
        client.get(f"/api/queues/{queue}/metrics", params={"granularity": "hour"}),
        400,
        "METRICS_DISABLED",
    )
    assert api_data(client.get("/api/metrics/status")) == {"enabled": False}
    assert api_data(client.get(f"/api/queues/{queue}"))["counts"]["completed"] == 1


def test_non_root_base_path(start_server: ServerFactory) -> None:
    server = start_server(HOPPER_DASHBOARD_BASE_PATH="/ops")
    client, queue = server.client, "based"
    job_id = push(client, queue, data={"x": 1})
    listed = api_data(client.get("/ops/api/queues"))
    assert [s["name"] for s in listed] == [queue]
    assert job_of_at(client, "/ops", queue, job_id)["data"] == {"x": 1}
    assert api_data(client.get("/ops/api/config")) == {"readOnly": False, "authRequired": False}
    api_error(client.get("/ops/api/nope"), 404, "NOT_FOUND")
    added = api_data(client.post(f"/ops/api/queues/{queue}/jobs", json={"name": "n"}), 201)
    # /api is no longer the management API: the job server answers its own 404
    for path in ("/api/queues", "/api/config", f"/api/queues/{queue}/jobs"):
        expect_error(client.get(path), 404)
    # the job server's paths are where they were
    assert get_job(client, job_id)["queue"] == queue
    assert pull(client, queue)[0]["id"] == job_id
    assert get_job(client, added["id"])["state"] == "waiting"
    assert client.get("/health").status_code == 200
    paths = client.get("/openapi.json").json()["paths"]
    assert "/ops/api/queues" in paths and "/api/queues" not in paths
    with open_events(server, f"/ops/api/queues/{queue}/events") as stream:
        api_data(client.post(f"/ops/api/queues/{queue}/drain"), 200)
        assert stream.expect("queue:drained")["queueName"] == queue


def job_of_at(client: httpx.Client, base: str, queue: str, job_id: str) -> dict[str, Any]:
    return check_job(api_data(client.get(f"{base}/api/queues/{queue}/jobs/{job_id}")))


def test_malformed_json_bodies_get_a_clear_message(client: httpx.Client, queue: str) -> None:
    """Every route that reads a JSON body: malformed JSON is a BAD_REQUEST in words, never
    the parser's position ("line 1 column 5 (char 4)")."""
    job_id = push(client, queue)
    routes = [
        ("POST", f"/api/queues/{queue}/jobs"),
        ("POST", f"/api/queues/{queue}/clean"),
        ("POST", f"/api/queues/{queue}/retry"),
        ("POST", f"/api/queues/{queue}/failures/retry"),
        ("PATCH", f"/api/queues/{queue}/jobs/{job_id}"),
    ]
    for method, path in routes:
        for body in (b"{", b"[1,", b"garbage", b'{"a":1} x', b"\xff"):
            resp = client.request(method, path, content=body)
            api_error(resp, 400, "BAD_REQUEST", "Valid JSON body is required")
    resp = client.patch(f"/api/queues/{queue}/jobs/{job_id}", content=b"[1]")
    api_error(resp, 400, "BAD_REQUEST", "body must be a JSON object")


def ws_reply(ws: ClientConnection, req_id: str) -> dict[str, Any]:
    """The reply to the command sent with `req_id`: `/ws` also carries every queue's
    events, so other messages are skipped."""
    while True:
        msg = json.loads(ws.recv(timeout=10))
        if msg.get("reqId") == req_id:
            return cast(dict[str, Any], msg)


def test_a_queue_only_pulled_from_is_not_created(server: Server, client: httpx.Client) -> None:
    """Pulls, long polls (HTTP, WebSocket, TCP) on a queue that never held a job leave
    nothing behind; a long poll still gets the queue's first push."""
    ghost = f"ghost-{uuid.uuid4().hex[:8]}"
    assert client.get(f"/queues/{ghost}/jobs").json()["job"] is None
    assert client.get(f"/queues/{ghost}/jobs", params={"timeout": 50}).json()["job"] is None
    with Conn(server.tcp_port) as c:
        assert c.call_ok("PULL", queue=ghost, timeout=50)["job"] is None
    with ws_connect(server.ws_url + "/ws", open_timeout=5) as ws:
        for req_id, extra in (("plain", {}), ("long", {"timeout": 50})):
            ws.send(json.dumps({"cmd": "PULL", "queue": ghost, "reqId": req_id, **extra}))
            reply = ws_reply(ws, req_id)
            assert reply["ok"] is True and reply["job"] is None, reply
    names = {s["name"] for s in api_data(client.get("/api/queues"))}
    assert ghost not in names
    api_error(client.get(f"/api/queues/{ghost}"), 404, "NOT_FOUND")

    waiting = f"first-{uuid.uuid4().hex[:8]}"
    got: list[Any] = []

    def poll() -> None:
        got.append(client.get(f"/queues/{waiting}/jobs", params={"timeout": 10_000}).json())

    poller = threading.Thread(target=poll)
    poller.start()
    time.sleep(0.3)  # most likely waiting by now; either way it must get the job
    job_id = push(client, waiting)
    poller.join()
    assert got[0]["job"]["id"] == job_id

"""Job endpoints of the HTTP API page, against the real server: exact shapes and status codes."""

from __future__ import annotations

import contextlib
import threading
import time
from typing import Any

import httpx
import pytest
from support import (
    Server,
    ServerFactory,
    expect_error,
    expect_ok,
    get_job,
    pull,
    push,
    wait_until,
)

NOT_ACTIVE = "Job not found or not active"

# Fields the page shows for GET /jobs/:id, and for a pulled job.
GET_FIELDS = {
    "id",
    "queue",
    "data",
    "priority",
    "createdAt",
    "runAt",
    "startedAt",
    "completedAt",
    "attempts",
    "maxAttempts",
    "backoff",
    "progress",
    "tags",
    "lifo",
    "removeOnComplete",
    "removeOnFail",
}
PULL_FIELDS = {
    "id",
    "queue",
    "data",
    "priority",
    "createdAt",
    "attempts",
    "maxAttempts",
    "progress",
}


# ----- push -------------------------------------------------------------------------------


@pytest.mark.smoke
def test_push_answers_ok_and_id(client: httpx.Client, queue: str) -> None:
    resp = client.post(f"/queues/{queue}/jobs", json={"data": {"to": "user@test.com"}})
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("application/json")
    body = resp.json()
    assert set(body) == {"ok", "id"}
    assert body["ok"] is True
    assert isinstance(body["id"], str) and body["id"]


def test_push_defaults_are_visible_via_get(client: httpx.Client, queue: str) -> None:
    before = int(time.time() * 1000)
    job_id = push(client, queue, data={"to": "user@test.com", "n": [1, 2.5, None, "x"]})
    job = get_job(client, job_id)
    assert set(job) >= GET_FIELDS, GET_FIELDS - set(job)
    assert job["id"] == job_id
    assert job["queue"] == queue
    assert job["data"] == {"to": "user@test.com", "n": [1, 2.5, None, "x"]}
    assert job["state"] == "waiting"
    assert isinstance(job["createdAt"], int) and before - 1000 <= job["createdAt"] <= before + 5000
    assert job["runAt"] == job["createdAt"]
    expected = {
        "priority": 0,
        "startedAt": None,
        "completedAt": None,
        "attempts": 0,
        "maxAttempts": 3,
        "backoff": 1000,
        "progress": 0,
        "tags": [],
        "lifo": False,
        "removeOnComplete": False,
        "removeOnFail": False,
        "ttl": None,
        "timeout": None,
        "uniqueKey": None,
        "groupId": None,
        "durable": False,
        "dependsOn": [],
        "repeat": None,
    }
    assert {k: job[k] for k in expected} == expected


@pytest.mark.smoke
def test_push_every_option_is_kept(client: httpx.Client, queue: str) -> None:
    """The page's own push example, every field at once (repeat with dependsOn and a
    jobId included: they apply to the first occurrence, docs/compatibility.md)."""
    dep1 = push(client, queue, data="dep1")
    dep2 = push(client, queue, data="dep2")
    custom = f"custom-{queue}"
    body: dict[str, Any] = {
        "data": {"to": "user@test.com", "subject": "Welcome"},
        "priority": 10,
        "delay": 5000,
        "maxAttempts": 5,
        "backoff": 2000,
        "ttl": 86400000,
        "timeout": 30000,
        "uniqueKey": f"email-user-{queue}",
        "jobId": custom,
        "tags": ["email", "onboarding"],
        "groupId": "batch-1",
        "lifo": True,
        "removeOnComplete": True,
        "removeOnFail": True,
        "durable": True,
        "dependsOn": [dep1, dep2],
        "repeat": {"every": 60000, "limit": 10},
    }
    resp = client.post(f"/queues/{queue}/jobs", json=body)
    assert resp.json() == {"ok": True, "id": custom}
    job = get_job(client, custom)
    for key in (
        "data",
        "priority",
        "delay",
        "maxAttempts",
        "backoff",
        "ttl",
        "timeout",
        "uniqueKey",
    ):
        assert job[key] == body[key], key
    for key in ("tags", "groupId", "lifo", "removeOnComplete", "removeOnFail", "durable"):
        assert job[key] == body[key], key
    assert job["dependsOn"] == [dep1, dep2]
    assert job["repeat"]["every"] == 60000 and job["repeat"]["limit"] == 10
    assert job["runAt"] - job["createdAt"] == 5000
    assert job["state"] == "waiting-children"  # its dependencies have not completed


def test_push_with_repeat(client: httpx.Client, queue: str) -> None:
    job_id = push(client, queue, data={"tick": 1}, repeat={"every": 60000, "limit": 10})
    job = get_job(client, job_id)
    assert job["repeat"]["every"] == 60000
    assert job["repeat"]["limit"] == 10
    assert job["state"] == "waiting"  # the first occurrence runs right away


def test_push_with_delay_is_delayed_until_due(client: httpx.Client, queue: str) -> None:
    job_id = push(client, queue, delay=300)
    assert get_job(client, job_id)["state"] == "delayed"
    assert expect_ok(client.get(f"/queues/{queue}/jobs"))["job"] is None
    job, _token = pull(client, queue, timeout=3000)  # the long poll sees it become due
    assert job["id"] == job_id
    assert time.time() * 1000 >= job["createdAt"] + 300


@pytest.mark.smoke
def test_bulk_push(client: httpx.Client, queue: str) -> None:
    jobs = [{"data": {"i": i}, "priority": i % 3} for i in range(25)]
    resp = client.post(f"/queues/{queue}/jobs/bulk", json={"jobs": jobs})
    body = expect_ok(resp)
    assert set(body) == {"ok", "ids"}
    ids = body["ids"]
    assert isinstance(ids, list) and len(ids) == 25 and len(set(ids)) == 25
    for i, job_id in enumerate(ids):
        job = get_job(client, job_id)
        assert job["data"] == {"i": i}
        assert job["priority"] == i % 3
        assert job["queue"] == queue


def test_bulk_push_is_all_or_nothing(client: httpx.Client, queue: str) -> None:
    jobs = [{"data": 1}, {"data": 2, "priority": "high"}]
    expect_error(client.post(f"/queues/{queue}/jobs/bulk", json={"jobs": jobs}), 400)
    assert expect_ok(client.get(f"/queues/{queue}/jobs"))["job"] is None


# ----- pull -------------------------------------------------------------------------------


@pytest.mark.smoke
def test_pull_shape(client: httpx.Client, queue: str) -> None:
    job_id = push(client, queue, data={"to": "user@test.com"}, priority=10)
    body = expect_ok(client.get(f"/queues/{queue}/jobs"))
    assert set(body) == {"ok", "job", "token"}
    job, token = body["job"], body["token"]
    assert set(job) >= PULL_FIELDS, PULL_FIELDS - set(job)
    assert job["id"] == job_id
    assert job["queue"] == queue
    assert job["data"] == {"to": "user@test.com"}
    assert job["priority"] == 10
    assert job["attempts"] == 0
    assert job["maxAttempts"] == 3
    assert job["progress"] == 0
    assert isinstance(job["createdAt"], int)
    assert isinstance(token, str) and token
    got = get_job(client, job_id)
    assert got["state"] == "active"
    assert isinstance(got["startedAt"], int) and got["startedAt"] >= got["createdAt"]


def test_pull_empty_queue(client: httpx.Client, queue: str) -> None:
    resp = client.get(f"/queues/{queue}/jobs")
    assert resp.status_code == 200
    assert resp.json() == {"ok": True, "job": None, "token": None}
    resp = client.get(f"/queues/{queue}/jobs", params={"timeout": 0})
    assert resp.json() == {"ok": True, "job": None, "token": None}


def test_pull_order_priority_then_fifo(client: httpx.Client, queue: str) -> None:
    low1 = push(client, queue, data="low1")
    high = push(client, queue, data="high", priority=5)
    low2 = push(client, queue, data="low2")
    mid = push(client, queue, data="mid", priority=2)
    order = [pull(client, queue)[0]["id"] for _ in range(4)]
    assert order == [high, mid, low1, low2]


def test_pull_lifo(client: httpx.Client, queue: str) -> None:
    first = push(client, queue, lifo=True)
    second = push(client, queue, lifo=True)
    assert pull(client, queue)[0]["id"] == second
    assert pull(client, queue)[0]["id"] == first


@pytest.mark.smoke
def test_long_poll_is_woken_by_a_push(server: Server, queue: str) -> None:
    result: dict[str, Any] = {}

    def poll() -> None:
        with httpx.Client(base_url=server.url, timeout=20) as other:
            t0 = time.monotonic()
            resp = other.get(f"/queues/{queue}/jobs", params={"timeout": 10000})
            result["elapsed"] = time.monotonic() - t0
            result["resp"] = resp

    thread = threading.Thread(target=poll)
    thread.start()
    time.sleep(0.3)  # the poll is waiting by now (and a late start still finds the job)
    job_id = push(server.client, queue, data={"woke": True})
    thread.join(15)
    assert not thread.is_alive()
    body = expect_ok(result["resp"])
    assert body["job"]["id"] == job_id
    assert body["job"]["data"] == {"woke": True}
    assert isinstance(body["token"], str)
    assert result["elapsed"] < 3.0, "the push should wake the poll well before its 10 s timeout"


def test_a_long_poll_whose_client_left_takes_no_job(server: Server, queue: str) -> None:
    """The client gives up (read timeout closes the connection) while the poll waits; a
    job pushed afterwards must stay waiting for the next worker, not sit leased."""
    with (
        httpx.Client(base_url=server.url, timeout=0.3) as impatient,
        contextlib.suppress(httpx.ReadTimeout),
    ):
        impatient.get(f"/queues/{queue}/jobs", params={"timeout": 10000})
    time.sleep(0.2)  # the server most likely noticed the disconnect; either way:
    job_id = push(server.client, queue)
    # Leased to the departed poll, the job would stay active until its lease ran out
    # (30 s); waiting within 5 s means it never was, or was released at once.
    assert wait_until(lambda: get_job(server.client, job_id)["state"] == "waiting")
    job, _token = pull(server.client, queue)
    assert job["id"] == job_id


def test_long_poll_times_out_with_null(client: httpx.Client, queue: str) -> None:
    t0 = time.monotonic()
    resp = client.get(f"/queues/{queue}/jobs", params={"timeout": 600})
    elapsed = time.monotonic() - t0
    assert resp.status_code == 200
    assert resp.json() == {"ok": True, "job": None, "token": None}
    assert 0.55 <= elapsed < 5.0, elapsed


def test_long_poll_returns_immediately_when_a_job_waits(client: httpx.Client, queue: str) -> None:
    job_id = push(client, queue)
    t0 = time.monotonic()
    job, _token = pull(client, queue, timeout=10000)
    assert job["id"] == job_id
    assert time.monotonic() - t0 < 2.0


# ----- get / delete -----------------------------------------------------------------------


@pytest.mark.smoke
def test_get_shows_each_state(client: httpx.Client, queue: str) -> None:
    waiting = push(client, queue)
    delayed = push(client, queue, delay=60000)
    assert get_job(client, waiting)["state"] == "waiting"
    assert get_job(client, delayed)["state"] == "delayed"
    job, token = pull(client, queue)
    assert job["id"] == waiting
    assert get_job(client, waiting)["state"] == "active"
    expect_ok(client.post(f"/jobs/{waiting}/ack", json={"token": token}))
    assert get_job(client, waiting)["state"] == "completed"


def test_get_unknown_job(client: httpx.Client) -> None:
    resp = client.get("/jobs/no-such-job")
    expect_error(resp, 404, "Job not found")
    assert resp.json() == {"ok": False, "error": "Job not found"}


def test_delete_waiting_and_delayed_jobs(client: httpx.Client, queue: str) -> None:
    for job_id in (push(client, queue), push(client, queue, delay=60000)):
        resp = client.delete(f"/jobs/{job_id}")
        assert resp.status_code == 200
        assert resp.json() == {"ok": True}
        expect_error(client.get(f"/jobs/{job_id}"), 404, "Job not found")
    assert expect_ok(client.get(f"/queues/{queue}/jobs"))["job"] is None


def test_delete_refuses_started_jobs(client: httpx.Client, queue: str) -> None:
    job_id = push(client, queue)
    token = expect_ok(client.get(f"/queues/{queue}/jobs"))["token"]
    expect_error(client.delete(f"/jobs/{job_id}"), 400, "Job cannot be cancelled: it is active")
    expect_ok(client.post(f"/jobs/{job_id}/ack", json={"token": token}))
    expect_error(client.delete(f"/jobs/{job_id}"), 400, "Job cannot be cancelled: it is completed")
    assert expect_ok(client.get(f"/jobs/{job_id}"))["job"]["state"] == "completed"


def test_delete_unknown_job(client: httpx.Client) -> None:
    expect_error(client.delete("/jobs/no-such-job"), 404, "Job not found")


# ----- ack / fail -------------------------------------------------------------------------


@pytest.mark.smoke
def test_ack_with_result(client: httpx.Client, queue: str) -> None:
    job_id = push(client, queue)
    _job, token = pull(client, queue)
    result = {"sent": True, "messageId": "abc-123"}
    resp = client.post(f"/jobs/{job_id}/ack", json={"result": result, "token": token})
    assert resp.status_code == 200
    assert resp.json() == {"ok": True}
    job = get_job(client, job_id)
    assert job["state"] == "completed"
    assert job["result"] == result
    assert isinstance(job["completedAt"], int) and job["completedAt"] >= job["startedAt"]


def test_ack_without_body(client: httpx.Client, queue: str) -> None:
    job_id = push(client, queue)
    pull(client, queue)
    resp = client.post(f"/jobs/{job_id}/ack")
    assert resp.json() == {"ok": True}
    assert get_job(client, job_id)["state"] == "completed"


def test_ack_with_the_wrong_token_is_refused(client: httpx.Client, queue: str) -> None:
    job_id = push(client, queue)
    pull(client, queue)
    expect_error(client.post(f"/jobs/{job_id}/ack", json={"token": "not-the-token"}), 400)
    assert get_job(client, job_id)["state"] == "active"


@pytest.mark.smoke
def test_fail_with_retry_then_final_failure(client: httpx.Client, queue: str) -> None:
    job_id = push(client, queue, maxAttempts=2, backoff=200)
    _job, token = pull(client, queue)
    resp = client.post(f"/jobs/{job_id}/fail", json={"error": "SMTP refused", "token": token})
    assert resp.status_code == 200
    assert resp.json() == {"ok": True}
    job = get_job(client, job_id)
    assert job["state"] == "delayed"
    assert job["attempts"] == 1
    assert job["error"] == "SMTP refused"
    assert job["runAt"] > job["startedAt"]

    again, token = pull(client, queue, timeout=5000)  # due after the backoff
    assert again["id"] == job_id
    assert again["attempts"] == 1
    expect_ok(client.post(f"/jobs/{job_id}/fail", json={"error": "still refused", "token": token}))
    job = get_job(client, job_id)
    assert job["state"] == "failed"
    assert job["attempts"] == 2
    assert job["error"] == "still refused"
    assert expect_ok(client.get(f"/queues/{queue}/jobs"))["job"] is None


def test_fail_without_retries_left(client: httpx.Client, queue: str) -> None:
    job_id = push(client, queue, maxAttempts=1)
    pull(client, queue)
    assert client.post(f"/jobs/{job_id}/fail", json={"error": "boom"}).json() == {"ok": True}
    job = get_job(client, job_id)
    assert job["state"] == "failed"
    assert job["error"] == "boom"
    assert job["attempts"] == 1
    assert job["completedAt"] is None and job["result"] is None
    assert isinstance(job["failedAt"], int) and job["failedAt"] >= job["startedAt"]


# ----- what GET /jobs/:id shows once the server ends an attempt ---------------------------
# bunqueue 2.9.5 differs in names and details (docs/compatibility.md, "job after a
# timeout"): `failedReason` for `error`, "Job timeout exceeded", `startedAt` reset to null
# on a retry, no `failedAt`.


def _settled(client: httpx.Client, job_id: str) -> dict[str, Any]:
    """The job once the server has taken it out of `active` (polled, bounded)."""

    def moved() -> dict[str, Any] | None:
        job = get_job(client, job_id)
        return None if job["state"] == "active" else job

    job = wait_until(moved)
    assert job, f"job {job_id} still active"
    return job  # type: ignore[no-any-return]


def test_processing_timeout_with_retries_left(client: httpx.Client, queue: str) -> None:
    job_id = push(client, queue, timeout=50, maxAttempts=2, backoff=60000)
    started = pull(client, queue)[0]["startedAt"]
    job = _settled(client, job_id)
    assert job["state"] == "delayed"
    assert job["attempts"] == 1
    assert job["error"] == "Job timed out after 50 ms"
    assert job["startedAt"] == started  # the attempt that timed out
    assert job["completedAt"] is None and job["failedAt"] is None and job["result"] is None
    assert job["runAt"] >= started + 50 + 60000  # the backoff, from the failure
    # The late worker's ack finds the job no longer active.
    expect_error(client.post(f"/jobs/{job_id}/ack", json={}), 400, NOT_ACTIVE)
    assert get_job(client, job_id)["state"] == "delayed"


def test_processing_timeout_without_retries_left(client: httpx.Client, queue: str) -> None:
    job_id = push(client, queue, timeout=50, maxAttempts=1)
    started = pull(client, queue)[0]["startedAt"]
    job = _settled(client, job_id)
    assert job["state"] == "failed"
    assert job["attempts"] == 1
    assert job["error"] == "Job timed out after 50 ms"
    assert job["startedAt"] == started
    assert job["completedAt"] is None
    assert isinstance(job["failedAt"], int) and job["failedAt"] >= started + 50


def test_lease_expiry_stalls_then_fails(start_server: ServerFactory, queue: str) -> None:
    """A job pulled over HTTP and neither acked nor failed within the stall interval
    goes back to waiting (`stalls` + 1, no attempt counted); at `--max-stalls` it fails."""
    client = start_server(HOPPER_STALL_INTERVAL_MS="200", HOPPER_MAX_STALLS="2").client
    job_id = push(client, queue)
    pull(client, queue)
    job = _settled(client, job_id)
    assert (job["state"], job["stalls"], job["attempts"]) == ("waiting", 1, 0)
    assert job["error"] is None and job["startedAt"] is not None
    assert pull(client, queue)[0]["id"] == job_id
    job = _settled(client, job_id)
    assert (job["state"], job["stalls"]) == ("failed", 2)
    assert job["error"] == "Job stalled more than the allowed limit"
    assert isinstance(job["failedAt"], int)


def test_fail_without_body(client: httpx.Client, queue: str) -> None:
    job_id = push(client, queue, maxAttempts=1)
    pull(client, queue)
    assert client.post(f"/jobs/{job_id}/fail").json() == {"ok": True}
    assert get_job(client, job_id)["state"] == "failed"


def test_ack_and_fail_of_a_job_that_is_not_active(client: httpx.Client, queue: str) -> None:
    waiting = push(client, queue)
    delayed = push(client, queue, delay=60000)
    done = push(client, queue, priority=9)
    pull(client, queue)
    expect_ok(client.post(f"/jobs/{done}/ack"))
    for job_id in (waiting, delayed, done, "no-such-job"):
        for op in ("ack", "fail"):
            resp = client.post(f"/jobs/{job_id}/{op}", json={})
            assert resp.status_code == 400, (job_id, op)
            assert resp.json() == {"ok": False, "error": NOT_ACTIVE}
    assert get_job(client, waiting)["state"] == "waiting"
    assert get_job(client, delayed)["state"] == "delayed"
    assert get_job(client, done)["state"] == "completed"


# ----- routing ----------------------------------------------------------------------------


@pytest.mark.smoke
def test_unknown_route(client: httpx.Client) -> None:
    for method, path in (
        ("GET", "/nope"),
        ("GET", "/nope/"),  # "/" itself is the dashboard page
        ("POST", "/queues//jobs"),
        ("PUT", "/jobs"),
        ("GET", "/jobs/x/nope"),
    ):
        resp = client.request(method, path)
        assert resp.status_code == 404, (method, path, resp.text)
        assert resp.json() == {"ok": False, "error": "Not found"}, (method, path)
        assert "allow" not in resp.headers


@pytest.mark.smoke
def test_known_path_with_another_method_is_a_405_with_allow(client: httpx.Client) -> None:
    # bunqueue answers these 404 "Not found" (see docs/compatibility.md).
    for method, path, allow in (
        ("PUT", "/jobs/x", "GET, DELETE, OPTIONS"),
        ("PATCH", "/queues/q/jobs", "GET, POST, OPTIONS"),
        ("DELETE", "/queues/q/jobs/bulk", "POST, OPTIONS"),
        ("GET", "/gc", "POST, OPTIONS"),
        ("GET", "/jobs/x/ack", "POST, OPTIONS"),
        ("POST", "/health", "GET, HEAD, OPTIONS"),
        ("DELETE", "/ready", "GET, HEAD, OPTIONS"),
        ("HEAD", "/stats", "GET, OPTIONS"),
    ):
        resp = client.request(method, path)
        if method != "HEAD":
            expect_error(resp, 405, f"Method {method} not allowed")
        assert resp.status_code == 405, (method, path, resp.text)
        assert resp.headers["allow"] == allow, (method, path)
        assert resp.headers["access-control-allow-origin"] == "*"
    # The WebSocket routes are not HTTP routes: no method is allowed there over HTTP.
    resp = client.post("/ws")
    assert resp.status_code == 404 and "allow" not in resp.headers


# ----- deduplication ----------------------------------------------------------------------


@pytest.mark.smoke
def test_unique_key_dedup(client: httpx.Client, queue: str) -> None:
    first = push(client, queue, data={"x": 1}, uniqueKey="k1")
    resp = client.post(f"/queues/{queue}/jobs", json={"data": {"x": 2}, "uniqueKey": "k1"})
    assert resp.json() == {"ok": True, "id": first}
    assert get_job(client, first)["data"] == {"x": 1}
    other_queue = push(client, queue + "-other", data={"x": 3}, uniqueKey="k1")
    assert other_queue != first  # the key is per queue
    # Held while the job is live, released once it completes.
    job, token = pull(client, queue)
    assert job["id"] == first
    assert push(client, queue, uniqueKey="k1") == first
    expect_ok(client.post(f"/jobs/{first}/ack", json={"token": token}))
    assert push(client, queue, uniqueKey="k1") != first


def test_job_id_dedup(client: httpx.Client, queue: str) -> None:
    custom = f"job-{queue}"
    resp = client.post(f"/queues/{queue}/jobs", json={"data": {"x": 1}, "jobId": custom})
    assert resp.json() == {"ok": True, "id": custom}
    resp = client.post(f"/queues/{queue}/jobs", json={"data": {"x": 2}, "jobId": custom})
    assert resp.json() == {"ok": True, "id": custom}
    job = get_job(client, custom)
    assert job["data"] == {"x": 1}
    pull(client, queue)
    assert expect_ok(client.get(f"/queues/{queue}/jobs"))["job"] is None  # only one job

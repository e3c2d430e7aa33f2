"""Named SSE events of the management API (`/api/events`, `/api/queues/:name/events`),
read with a real streaming client (httpx) while jobs move through states through the job
server API and the management API. Every read is bounded by the client's read timeout
and every scan by a frame count (see `management_support.NamedEvents`)."""

from __future__ import annotations

import time
import uuid

import httpx
from management_support import ack, api_data, api_error, fail, open_events, take
from support import Server, ServerFactory, expect_ok, pull, push
from tcp_client import Conn


def test_connected_first_with_stream_headers(server: Server, queue: str) -> None:
    for path in ("/api/events", f"/api/queues/{queue}/events"):
        with open_events(server, path) as stream:
            headers = stream.resp.headers
            assert headers["content-type"].startswith("text/event-stream")
            assert headers["cache-control"] == "no-cache"
            assert headers["access-control-allow-origin"] == "*"


def test_job_lifecycle_through_the_job_server(server: Server, queue: str) -> None:
    client = server.client
    with open_events(server, f"/api/queues/{queue}/events") as stream:
        job_id = push(client, queue, data={"to": "a@b.c"})
        waiting = stream.expect("job:waiting", job_id)
        assert waiting["queueName"] == queue

        token = take(client, queue, job_id)
        assert stream.expect("job:active", job_id)["queueName"] == queue

        ack(client, job_id, token, {"sent": 1})
        completed = stream.expect("job:completed", job_id)
        assert completed["data"] == {"returnvalue": {"sent": 1}}

        doomed = push(client, queue, maxAttempts=1)
        fail(client, doomed, take(client, queue, doomed), "SMTP refused")
        failed = stream.expect("job:failed", doomed)
        assert failed["data"] == {"reason": "SMTP refused"}

        order = [name for name, body in stream.seen if body.get("jobId") == job_id]
        assert order == ["job:waiting", "job:active", "job:completed"]


def test_a_failed_attempt_with_retries_left_is_delayed(server: Server, queue: str) -> None:
    client = server.client
    with open_events(server, f"/api/queues/{queue}/events") as stream:
        job_id = push(client, queue, maxAttempts=2, backoff=60_000)
        fail(client, job_id, take(client, queue, job_id), "transient")
        assert stream.expect("job:failed", job_id)["data"] == {"reason": "transient"}
        stream.expect("job:delayed", job_id)


def test_delayed_push_is_delayed_not_waiting(server: Server, queue: str) -> None:
    client = server.client
    with open_events(server, f"/api/queues/{queue}/events") as stream:
        later = push(client, queue, delay=60_000)
        stream.expect("job:delayed", later)
        marker = push(client, queue)
        stream.expect("job:waiting", marker)
        assert ("job:waiting", later) not in [(n, b.get("jobId")) for n, b in stream.seen]


def test_removed_by_either_api(server: Server, queue: str) -> None:
    client = server.client
    with open_events(server, f"/api/queues/{queue}/events") as stream:
        first = push(client, queue)
        second = push(client, queue)
        api_data(client.delete(f"/api/queues/{queue}/jobs/{first}"))
        stream.expect("job:removed", first)
        expect_ok(client.delete(f"/jobs/{second}"))
        stream.expect("job:removed", second)


def test_queue_events(server: Server, queue: str) -> None:
    client = server.client
    push(client, queue)
    with open_events(server, f"/api/queues/{queue}/events") as stream:
        api_data(client.post(f"/api/queues/{queue}/pause"))
        paused = stream.expect("queue:paused")
        assert paused["queueName"] == queue
        assert paused["jobId"] is None
        assert paused["data"] == {"jobName": "__all__"}

        api_data(client.post(f"/api/queues/{queue}/pause", json={"jobName": "mail"}))
        assert stream.expect("queue:paused")["data"] == {"jobName": "mail"}
        api_data(client.post(f"/api/queues/{queue}/resume", json={"jobName": "mail"}))
        assert stream.expect("queue:resumed")["data"] == {"jobName": "mail"}
        api_data(client.post(f"/api/queues/{queue}/resume"))
        resumed = stream.expect("queue:resumed")
        assert resumed["data"] == {"jobName": "__all__"} and resumed["jobId"] is None

        api_data(client.post(f"/api/queues/{queue}/drain"))
        drained = stream.expect("queue:drained")
        assert drained["queueName"] == queue and drained["jobId"] is None


def test_management_actions_emit_job_events(server: Server, queue: str) -> None:
    client = server.client
    jobs = f"/api/queues/{queue}/jobs"
    with open_events(server, f"/api/queues/{queue}/events") as stream:
        added = api_data(client.post(jobs, json={"name": "n"}), 201)
        stream.expect("job:waiting", added["id"])
        later = api_data(client.post(jobs, json={"name": "n", "opts": {"delay": 60_000}}), 201)
        stream.expect("job:delayed", later["id"])

        take(client, queue, added["id"])
        stream.expect("job:active", added["id"])
        api_data(client.post(f"{jobs}/{added['id']}/cancel"))
        assert stream.expect("job:failed", added["id"])["data"] == {"reason": "Job cancelled"}

        api_data(client.post(f"{jobs}/{added['id']}/retry"))
        stream.expect("job:waiting", added["id"])


def test_promote_publishes_waiting(server: Server, queue: str) -> None:
    client = server.client
    with open_events(server, f"/api/queues/{queue}/events") as stream:
        later = push(client, queue, delay=60_000)
        stream.expect("job:delayed", later)
        api_data(client.post(f"/api/queues/{queue}/jobs/{later}/promote"))
        marker = push(client, queue)
        frames = stream.until(lambda n, b: n == "job:waiting" and b["jobId"] == marker)
        assert ("job:waiting", later) in [(n, b.get("jobId")) for n, b in frames]


def test_flow_parent_waits_for_children(server: Server, queue: str) -> None:
    client = server.client
    with open_events(server, f"/api/queues/{queue}/events") as stream:
        child = push(client, queue)
        parent = push(client, queue, dependsOn=[child])
        stream.expect("job:waiting-children", parent)
        assert ("job:waiting", parent) not in [(n, b.get("jobId")) for n, b in stream.seen]


def test_all_queues_stream_sees_a_new_queue_at_once(server: Server) -> None:
    client = server.client
    fresh = f"fresh-{uuid.uuid4().hex[:8]}"
    with open_events(server, "/api/events") as stream:
        job_id = push(client, fresh)
        assert stream.expect("job:waiting", job_id)["queueName"] == fresh


def test_queue_stream_sees_only_its_queue(server: Server, queue: str) -> None:
    client = server.client
    other = f"{queue}-other"
    with open_events(server, f"/api/queues/{queue}/events") as stream:
        push(client, other)
        mine = push(client, queue)
        stream.expect("job:waiting", mine)
        assert {b["queueName"] for _, b in stream.seen if b} == {queue}


def test_stalled(start_server: ServerFactory) -> None:
    server = start_server(HOPPER_STALL_INTERVAL_MS="300")
    client, queue = server.client, "stally"
    with open_events(server, f"/api/queues/{queue}/events") as stream:
        job_id = push(client, queue)
        pull(client, queue)  # leased and never acked or renewed
        t0 = time.monotonic()
        stalled = stream.expect("job:stalled", job_id)
        assert stalled["queueName"] == queue
        assert time.monotonic() - t0 < 5


def test_progress(server: Server, queue: str) -> None:
    """A worker reports progress over bunqueue's protocol (here the TCP port; `/ws`
    takes the same command): the stream shows it as job:progress."""
    with open_events(server, f"/api/queues/{queue}/events") as stream, Conn(server.tcp_port) as c:
        job_id = push(server.client, queue)
        pulled = c.call_ok("PULL", queue=queue, owner="w")
        assert pulled["job"]["id"] == job_id
        c.call_ok("Progress", id=job_id, progress=40, message="almost")
        event = stream.expect("job:progress", job_id)
        assert event["queueName"] == queue
        assert event["data"]["progress"] == 40


def test_allow_list_filters_the_streams(start_server: ServerFactory) -> None:
    server = start_server(HOPPER_DASHBOARD_QUEUES="a")
    client = server.client
    api_error(client.get("/api/queues/c/events"), 404, "NOT_FOUND")
    with open_events(server, "/api/events") as stream:
        hidden = push(client, "c")
        visible = push(client, "a")
        stream.expect("job:waiting", visible)
        assert {b["queueName"] for _, b in stream.seen if b} == {"a"}
        assert hidden not in {b.get("jobId") for _, b in stream.seen}


def test_stream_ends_when_the_client_leaves(server: Server, queue: str) -> None:
    """Closing streams must not leak subscriptions: the SSE count returns to what it was."""
    before = server.client.get("/health").json()["connections"]["sse"]
    for _ in range(3):
        with open_events(server, f"/api/queues/{queue}/events"):
            pass

    def settled() -> bool:
        resp = server.client.get("/health")
        return bool(resp.json()["connections"]["sse"] == before)

    deadline = time.monotonic() + 5
    while not settled():
        assert time.monotonic() < deadline, "SSE connections were not released"
        time.sleep(0.05)
    with httpx.Client(base_url=server.url, timeout=5.0) as c:
        assert c.get("/api/config").status_code == 200

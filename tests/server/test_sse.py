"""Server-Sent Events: GET /events and GET /events/queues/:queue, read with a real
streaming client (httpx). Every read is bounded by the client's read timeout and every
loop by a message count."""

from __future__ import annotations

import contextlib
import json
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from support import Server, expect_ok, get_job, pull, push, wait_until

READ_TIMEOUT_S = 5.0
MAX_MESSAGES = 500


class EventStream:
    """Reads SSE messages (blank-line separated) off an open httpx stream."""

    def __init__(self, resp: httpx.Response) -> None:
        self.resp = resp
        self._lines = resp.iter_lines()  # kept: dropping the iterator closes the stream
        self.raw: list[str] = []

    def next_message(self) -> dict[str, Any]:
        data: list[str] = []
        for _ in range(1000):
            line = next(self._lines)
            self.raw.append(line)
            if line == "":
                if data:
                    return json.loads("\n".join(data))  # type: ignore[no-any-return]
                continue
            if line.startswith(":"):
                continue  # comment (keep-alive)
            name, _, value = line.partition(":")
            if name == "retry" and len(self.raw) == 1:
                continue  # the reconnection hint, first in the stream only
            assert name == "data", f"only unnamed data messages are expected, got {line!r}"
            data.append(value[1:] if value.startswith(" ") else value)
        raise AssertionError("no complete message in 1000 lines")

    def read_until(self, done: Callable[[dict[str, Any]], bool]) -> list[dict[str, Any]]:
        """Messages up to and including the first for which `done` is true."""
        seen = []
        for _ in range(MAX_MESSAGES):
            msg = self.next_message()
            seen.append(msg)
            if done(msg):
                return seen
        raise AssertionError(f"not found in {MAX_MESSAGES} messages: {seen[-5:]}")

    def expect(self, event_type: str, job_id: str) -> dict[str, Any]:
        def match(m: dict[str, Any]) -> bool:
            return m.get("eventType") == event_type and m.get("jobId") == job_id

        return self.read_until(match)[-1]


@contextlib.contextmanager
def open_stream(server: Server, path: str) -> Iterator[EventStream]:
    timeout = httpx.Timeout(10.0, read=READ_TIMEOUT_S)
    with (
        httpx.Client(base_url=server.url, timeout=timeout) as client,
        client.stream("GET", path) as resp,
    ):
        assert resp.status_code == 200
        stream = EventStream(resp)
        hello = stream.next_message()
        # The reconnection hint rides with the connection message, as in bunqueue 2.9.5.
        assert stream.raw[0] == "retry: 3000", stream.raw[0]
        assert stream.raw[1].startswith('data: {"connected":true,"clientId":"'), stream.raw[1]
        assert hello["connected"] is True
        client_id = uuid.UUID(hello["clientId"])
        assert client_id.version == 7 and client_id.variant == uuid.RFC_4122
        yield stream


def _check_common(event: dict[str, Any], event_type: str, queue: str, job_id: str) -> None:
    assert event["eventType"] == event_type
    assert event["queue"] == queue
    assert event["jobId"] == job_id
    now = time.time() * 1000
    assert isinstance(event["timestamp"], int) and now - 60_000 < event["timestamp"] <= now + 1000


def test_stream_headers_and_connection_message(server: Server) -> None:
    with open_stream(server, "/events") as stream:
        headers = stream.resp.headers
        assert headers["content-type"].startswith("text/event-stream")
        assert headers["cache-control"] == "no-cache"
        assert headers["access-control-allow-origin"] == "*"


def test_client_ids_differ(server: Server) -> None:
    ids = set()
    for _ in range(3):
        with open_stream(server, "/events") as stream:
            ids.add(stream.raw[1])
    assert len(ids) == 3


@pytest.mark.smoke
def test_job_lifecycle_events(server: Server, queue: str) -> None:
    client = server.client
    with open_stream(server, "/events") as stream:
        job_id = push(client, queue, data={"to": "user@test.com"}, maxAttempts=2, backoff=60000)
        pushed = stream.expect("pushed", job_id)
        _check_common(pushed, "pushed", queue, job_id)
        assert pushed["data"] == {"to": "user@test.com"}

        _job, token = pull(client, queue)
        _check_common(stream.expect("pulled", job_id), "pulled", queue, job_id)

        expect_ok(
            client.post(f"/jobs/{job_id}/fail", json={"error": "SMTP refused", "token": token})
        )
        failed = stream.expect("failed", job_id)
        _check_common(failed, "failed", queue, job_id)
        assert failed["error"] == "SMTP refused"
        delayed = stream.expect("delayed", job_id)  # the retry waits for its backoff
        _check_common(delayed, "delayed", queue, job_id)
        assert delayed["delay"] == 60000

        expect_ok(client.delete(f"/jobs/{job_id}"))
        removed = stream.expect("removed", job_id)
        _check_common(removed, "removed", queue, job_id)
        assert removed["prev"] == "delayed"

        done = push(client, queue, data=2)
        _job, token = pull(client, queue)
        expect_ok(client.post(f"/jobs/{done}/ack", json={"result": {"r": 1}, "token": token}))
        _check_common(stream.expect("completed", done), "completed", queue, done)


def test_delayed_push_and_removed_waiting_job(server: Server, queue: str) -> None:
    client = server.client
    with open_stream(server, "/events") as stream:
        later = push(client, queue, delay=5000)
        assert stream.expect("delayed", later)["delay"] == 5000
        waiting = push(client, queue)
        expect_ok(client.delete(f"/jobs/{waiting}"))
        assert stream.expect("removed", waiting)["prev"] == "waiting"


def test_final_failure_event(server: Server, queue: str) -> None:
    client = server.client
    with open_stream(server, "/events") as stream:
        job_id = push(client, queue, maxAttempts=1)
        pull(client, queue)
        expect_ok(client.post(f"/jobs/{job_id}/fail", json={"error": "boom"}))
        failed = stream.expect("failed", job_id)
        assert failed["error"] == "boom"
        assert get_job(client, job_id)["state"] == "failed"


def test_duplicate_push_event(server: Server, queue: str) -> None:
    client = server.client
    with open_stream(server, "/events") as stream:
        first = push(client, queue, uniqueKey="k")
        assert push(client, queue, uniqueKey="k") == first
        _check_common(stream.expect("duplicated", first), "duplicated", queue, first)


def test_queue_filter(server: Server, queue: str) -> None:
    client = server.client
    other = queue + "-other"
    with (
        open_stream(server, f"/events/queues/{queue}") as mine,
        open_stream(server, "/events") as everything,
    ):
        foreign = push(client, other, data="not for you")
        own = push(client, queue, data="for you")
        seen = mine.read_until(lambda m: m.get("jobId") == own)
        assert all(m["queue"] == queue for m in seen if "queue" in m), seen
        assert foreign not in {m.get("jobId") for m in seen}
        # The unfiltered stream gets both, in order.
        seen_all = everything.read_until(lambda m: m.get("jobId") == own)
        ids = [m.get("jobId") for m in seen_all]
        assert foreign in ids and ids.index(foreign) < ids.index(own)


def test_bulk_push_events(server: Server, queue: str) -> None:
    client = server.client
    with open_stream(server, f"/events/queues/{queue}") as stream:
        jobs = [{"data": {"i": i}} for i in range(50)]
        ids = expect_ok(client.post(f"/queues/{queue}/jobs/bulk", json={"jobs": jobs}))["ids"]
        seen = stream.read_until(lambda m: m.get("jobId") == ids[-1])
        pushed = [m for m in seen if m.get("eventType") == "pushed"]
        assert [m["jobId"] for m in pushed] == ids
        assert [m["data"] for m in pushed] == [{"i": i} for i in range(50)]


def _sse_count(client: httpx.Client) -> int:
    return int(expect_ok(client.get("/health"))["connections"]["sse"])


def _no_streams(client: httpx.Client) -> int:
    """0, once the streams of earlier tests on this server are counted out (a closed
    stream is counted out when the server notices the disconnect, a moment later)."""
    assert wait_until(lambda: _sse_count(client) == 0)
    return 0


def test_disconnect_decrements_the_connection_count(server: Server, queue: str) -> None:
    client = server.client
    base = _no_streams(client)
    with open_stream(server, "/events") as first:
        with open_stream(server, f"/events/queues/{queue}"):
            assert _sse_count(client) == base + 2
        assert wait_until(lambda: _sse_count(client) == base + 1)
        # The remaining stream still works.
        job_id = push(client, queue)
        first.expect("pushed", job_id)
    assert wait_until(lambda: _sse_count(client) == base)
    # Events after everyone left do not break anything.
    push(client, queue)
    expect_ok(client.get("/health"))


def test_many_connect_disconnect_cycles(server: Server) -> None:
    client = server.client
    base = _no_streams(client)
    for _ in range(20):
        with open_stream(server, "/events"):
            pass
    assert wait_until(lambda: _sse_count(client) == base)

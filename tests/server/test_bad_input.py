"""Bad input never breaks the server: every case answers 4xx (never 500) with the
`{"ok":false,"error":"..."}` envelope, the next request is served, and a job pushed before
is untouched.

The server of this module has small size limits so the oversize cases stay cheap.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from support import Server, expect_error, expect_ok, get_job, pull, push, run_server
from tcp_client import Conn

MAX_BODY = 64 * 1024
MAX_PAYLOAD = 8 * 1024


@pytest.fixture(scope="module")
def small_server(server_workdir: Path) -> Iterator[Server]:
    with run_server(
        server_workdir,
        HOPPER_MAX_BODY_BYTES=str(MAX_BODY),
        HOPPER_MAX_PAYLOAD_BYTES=str(MAX_PAYLOAD),
    ) as s:
        yield s


@pytest.fixture(scope="module")
def sentinel(small_server: Server) -> dict[str, Any]:
    """A waiting job pushed before any bad request; it must never change."""
    job_id = push(
        small_server.client,
        "sentinel",
        data={"keep": "me", "n": [1, 2, 3]},
        priority=7,
        tags=["a"],
        uniqueKey="sentinel-key",
    )
    return get_job(small_server.client, job_id)


@dataclass(frozen=True)
class Case:
    """One bad request. `path` may use {queue} and {active} (the id of a job pulled just
    before the request); `body` is raw bytes, or any other value sent as JSON."""

    name: str
    method: str
    path: str
    body: Any = None
    status: int = 400
    mentions: str | None = None  # a word the error message must contain
    headers: dict[str, str] = field(default_factory=dict)


def _json(value: Any) -> bytes:
    return json.dumps(value).encode()


def _push_field(name: str, value: Any, mentions: str | None = None) -> Case:
    body = {"data": {"x": 1}, name: value}
    return Case(
        f"push-{name}={json.dumps(value)[:20]}",
        "POST",
        "/queues/{queue}/jobs",
        _json(body),
        mentions=mentions or name,
    )


LONG_NAME = "a" * 300
MAX_DEPTH = 100  # arrays and objects in a payload (data, a result), docs/compatibility.md


def nested(depth: int) -> Any:
    """A JSON value `depth` arrays deep."""
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value


INVALID = "Invalid JSON body"
CASES: list[Case] = [
    # --- push: body that is not a JSON object
    Case("push-malformed", "POST", "/queues/{queue}/jobs", b"not json"),
    Case("push-truncated", "POST", "/queues/{queue}/jobs", b'{"data": {"x": 1'),
    Case("push-trailing-garbage", "POST", "/queues/{queue}/jobs", b'{"data":1}x'),
    Case("push-nan", "POST", "/queues/{queue}/jobs", b'{"data":1,"delay":NaN}'),
    Case("push-bad-utf8", "POST", "/queues/{queue}/jobs", b'{"data":"\xff\xfe"}'),
    Case("push-deep-nesting", "POST", "/queues/{queue}/jobs", b"[" * 50_000),
    Case("push-empty-body", "POST", "/queues/{queue}/jobs", b""),
    Case("push-null", "POST", "/queues/{queue}/jobs", b"null"),
    Case("push-array", "POST", "/queues/{queue}/jobs", b"[]"),
    Case("push-number", "POST", "/queues/{queue}/jobs", b"5"),
    Case("push-string", "POST", "/queues/{queue}/jobs", b'"data"'),
    Case("push-true", "POST", "/queues/{queue}/jobs", b"true"),
    Case("push-no-data", "POST", "/queues/{queue}/jobs", b"{}", mentions="data"),
    # --- push: wrong type for each field
    _push_field("priority", "x"),
    _push_field("priority", True),
    _push_field("priority", [1]),
    _push_field("delay", "5"),
    _push_field("delay", False),
    _push_field("maxAttempts", "3"),
    _push_field("backoff", "1000"),
    _push_field("backoff", {"type": "linear", "delay": 5}),
    _push_field("ttl", "x"),
    _push_field("timeout", "5"),
    _push_field("uniqueKey", 5),
    _push_field("uniqueKey", ""),
    _push_field("jobId", 5),
    _push_field("jobId", ""),
    _push_field("jobId", {"id": 1}),
    _push_field("tags", "email"),
    _push_field("tags", [1, 2]),
    _push_field("groupId", 5),
    _push_field("groupId", ""),
    _push_field("lifo", "yes"),
    _push_field("lifo", 1),
    _push_field("removeOnComplete", "yes"),
    _push_field("removeOnFail", "no"),
    _push_field("durable", "x"),
    _push_field("dependsOn", "abc"),
    _push_field("dependsOn", [1]),
    _push_field("dependsOn", ["no-such-job"]),
    _push_field("repeat", "every minute"),
    _push_field("repeat", {}),
    _push_field("repeat", {"every": "5"}),
    _push_field("repeat", {"pattern": "not a cron"}, mentions="pattern"),
    _push_field("name", 5),
    # --- push: out of range
    _push_field("delay", -5),
    _push_field("delay", 1.5),
    _push_field("delay", 10**30),
    _push_field("priority", 1.5),
    _push_field("priority", 2**31),
    _push_field("priority", -(2**31)),
    _push_field("maxAttempts", 0),
    _push_field("maxAttempts", -1),
    _push_field("maxAttempts", 10**6),
    _push_field("backoff", -1),
    _push_field("ttl", -1),
    _push_field("timeout", -1),
    _push_field("repeat", {"every": -1}),
    _push_field("ttl", 0),
    _push_field("timeout", 0),
    _push_field("jobId", "j" * 513),
    _push_field("uniqueKey", "u" * 513),
    _push_field("groupId", "g" * 513),
    _push_field("name", "n" * 257),
    _push_field("tags", ["t"] * 65),
    _push_field("tags", ["t" * 513]),
    Case(
        "push-data-nested-too-deep",
        "POST",
        "/queues/{queue}/jobs",
        _json({"data": nested(MAX_DEPTH + 1)}),
        mentions=f"data is nested more than {MAX_DEPTH} levels deep",
    ),
    Case(
        "bulk-data-nested-too-deep",
        "POST",
        "/queues/{queue}/jobs/bulk",
        _json({"jobs": [{"data": 1}, {"data": nested(MAX_DEPTH + 1)}]}),
        mentions="job 1: data is nested",
    ),
    Case(
        "push-delay-1e400",
        "POST",
        "/queues/{queue}/jobs",
        b'{"data":1,"delay":1e400}',
    ),
    Case(
        "push-data-over-payload-limit",
        "POST",
        "/queues/{queue}/jobs",
        _json({"data": "x" * (MAX_PAYLOAD + 100)}),
    ),
    # --- bodies over HOPPER_MAX_BODY_BYTES
    Case(
        "push-body-too-large",
        "POST",
        "/queues/{queue}/jobs",
        _json({"data": "x" * (MAX_BODY * 2)}),
        status=413,
    ),
    Case(
        "bulk-body-too-large",
        "POST",
        "/queues/{queue}/jobs/bulk",
        _json({"jobs": [{"data": "x" * 1000}] * 100}),
        status=413,
    ),
    Case(
        "ack-body-too-large",
        "POST",
        "/jobs/{active}/ack",
        _json({"result": "x" * (MAX_BODY * 2)}),
        status=413,
    ),
    # --- odd queue names
    Case("queue-space", "POST", "/queues/a%20b/jobs", _json({"data": 1}), mentions="queue"),
    Case("queue-utf8", "POST", "/queues/%C3%A9/jobs", _json({"data": 1})),
    Case("queue-nul", "POST", "/queues/%00/jobs", _json({"data": 1})),
    Case("queue-bad-escape", "POST", "/queues/%ZZ/jobs", _json({"data": 1})),
    Case("queue-quote", "POST", "/queues/a%22b/jobs", _json({"data": 1})),
    Case("queue-300-chars", "POST", f"/queues/{LONG_NAME}/jobs", _json({"data": 1})),
    Case("queue-slash", "POST", "/queues/a%2Fb/jobs", _json({"data": 1}), status=404),
    Case("pull-queue-space", "GET", "/queues/a%20b/jobs"),
    Case("pull-queue-300-chars", "GET", f"/queues/{LONG_NAME}/jobs"),
    Case("bulk-queue-space", "POST", "/queues/a%20b/jobs/bulk", _json({"jobs": [{"data": 1}]})),
    # --- pull ?timeout=
    Case("timeout-word", "GET", "/queues/{queue}/jobs?timeout=abc", mentions="timeout"),
    Case("timeout-negative", "GET", "/queues/{queue}/jobs?timeout=-5", mentions="timeout"),
    Case("timeout-too-long", "GET", "/queues/{queue}/jobs?timeout=70000", mentions="timeout"),
    Case("timeout-fraction", "GET", "/queues/{queue}/jobs?timeout=1.5", mentions="timeout"),
    Case("timeout-exponent", "GET", "/queues/{queue}/jobs?timeout=1e3", mentions="timeout"),
    Case("timeout-plus", "GET", "/queues/{queue}/jobs?timeout=%2B5", mentions="timeout"),
    Case("timeout-space", "GET", "/queues/{queue}/jobs?timeout=%205", mentions="timeout"),
    Case("timeout-huge", "GET", "/queues/{queue}/jobs?timeout=" + "9" * 40, mentions="timeout"),
    Case("timeout-superscript", "GET", "/queues/{queue}/jobs?timeout=%C2%B2", mentions="timeout"),
    Case("timeout-arabic-digit", "GET", "/queues/{queue}/jobs?timeout=%D9%A3", mentions="timeout"),
    # --- bulk push
    Case("bulk-malformed", "POST", "/queues/{queue}/jobs/bulk", b"not json"),
    Case("bulk-truncated", "POST", "/queues/{queue}/jobs/bulk", b"[1,", mentions=INVALID),
    Case(
        "bulk-truncated-object",
        "POST",
        "/queues/{queue}/jobs/bulk",
        b'{"jobs":[{"data":1}',
        mentions=INVALID,
    ),
    Case(
        "bulk-duplicate-field",
        "POST",
        "/queues/{queue}/jobs/bulk",
        b'[{"data":1,"data":2}]',
        mentions="duplicate field",
    ),
    Case("bulk-jobs-number", "POST", "/queues/{queue}/jobs/bulk", b'{"jobs":5}', mentions="jobs"),
    Case("push-duplicate-field", "POST", "/queues/{queue}/jobs", b'{"data":1,"data":2}'),
    Case(
        "push-duplicate-truncated",
        "POST",
        "/queues/{queue}/jobs",
        b'{"data":1,"data":2',
        mentions=INVALID,
    ),
    Case("bulk-empty-body", "POST", "/queues/{queue}/jobs/bulk", b""),
    Case("bulk-no-jobs", "POST", "/queues/{queue}/jobs/bulk", _json({})),
    Case("bulk-jobs-string", "POST", "/queues/{queue}/jobs/bulk", _json({"jobs": "x"})),
    Case("bulk-jobs-numbers", "POST", "/queues/{queue}/jobs/bulk", _json({"jobs": [1, 2]})),
    Case(
        "bulk-one-bad-job",
        "POST",
        "/queues/{queue}/jobs/bulk",
        _json({"jobs": [{"data": 1}, {"data": 2, "maxAttempts": 0}]}),
        mentions="maxAttempts",
    ),
    # --- ack / fail bodies (on a job that is active)
    Case("ack-malformed", "POST", "/jobs/{active}/ack", b"garbage"),
    Case("ack-null", "POST", "/jobs/{active}/ack", b"null"),
    Case("ack-array", "POST", "/jobs/{active}/ack", b"[]"),
    Case("ack-number", "POST", "/jobs/{active}/ack", b"5"),
    Case("ack-token-number", "POST", "/jobs/{active}/ack", _json({"token": 5})),
    Case("ack-token-wrong", "POST", "/jobs/{active}/ack", _json({"token": "wrong"})),
    Case(
        "ack-result-nested-too-deep",
        "POST",
        "/jobs/{active}/ack",
        _json({"result": nested(MAX_DEPTH + 1)}),
        mentions=f"result is nested more than {MAX_DEPTH} levels deep",
    ),
    Case("fail-malformed", "POST", "/jobs/{active}/fail", b"garbage"),
    Case("fail-null", "POST", "/jobs/{active}/fail", b"null"),
    Case("fail-string", "POST", "/jobs/{active}/fail", b'"boom"'),
    Case("fail-error-number", "POST", "/jobs/{active}/fail", _json({"error": 5})),
    Case("fail-error-list", "POST", "/jobs/{active}/fail", _json({"error": ["x"]})),
    Case("fail-token-wrong", "POST", "/jobs/{active}/fail", _json({"token": "wrong"})),
    # --- job ids
    Case("get-long-id", "GET", "/jobs/" + "x" * 5000, status=404),
    Case("get-nul-id", "GET", "/jobs/%00", status=404),
    Case("get-bad-escape-id", "GET", "/jobs/%ZZ%C3", status=404),
    Case("delete-odd-id", "DELETE", "/jobs/%FF%FE", status=404),
    # The WebSocket route's method name, asked for over plain HTTP: not a route.
    Case("ws-method-over-http", "WS", "/ws", status=404),
    Case("ack-odd-id", "POST", "/jobs/%FF/ack", _json({})),
]


def _send(client: httpx.Client, case: Case, queue: str, active: str) -> httpx.Response:
    path = case.path.replace("{queue}", queue).replace("{active}", active)
    content = case.body if isinstance(case.body, bytes) or case.body is None else _json(case.body)
    # A raw request so httpx does not normalise the path or the query.
    request = client.build_request(case.method, path, content=content, headers=case.headers)
    request.url = httpx.URL(client.base_url.join("/")).copy_with(raw_path=path.encode())
    return client.send(request)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input(small_server: Server, sentinel: dict[str, Any], queue: str, case: Case) -> None:
    client = small_server.client
    active = ""
    if "{active}" in case.path:
        active = push(client, queue, data={"mine": True})
        assert pull(client, queue)[0]["id"] == active

    resp = _send(client, case, queue, active)

    assert resp.status_code < 500, f"{resp.status_code}: {resp.text}"
    message = expect_error(resp, case.status)
    if case.mentions is not None:
        assert case.mentions in message, message
    # Words for a client, not a parser's position ("at line 1 column 5", "(char 4)").
    assert not re.search(r"line \d|column \d|char \d", message), message
    assert resp.headers.get("access-control-allow-origin") == "*"
    # Still serving, nothing pushed by the bad request, the earlier jobs untouched.
    expect_ok(client.get("/health"))
    assert get_job(client, sentinel["id"]) == sentinel
    if active:
        job = get_job(client, active)
        assert job["state"] == "active"
        assert job["attempts"] == 0
        assert job["data"] == {"mine": True}
    else:
        assert client.get(f"/queues/{queue}/jobs").json() == {
            "ok": True,
            "job": None,
            "token": None,
        }


def test_chunked_body_over_the_limit(small_server: Server, queue: str) -> None:
    """No Content-Length: the limit is enforced while reading."""

    def chunks() -> Iterator[bytes]:
        yield b'{"data":"'
        for _ in range(MAX_BODY // 4096 + 2):
            yield b"x" * 4096
        yield b'"}'

    resp = small_server.client.post(f"/queues/{queue}/jobs", content=chunks())
    expect_error(resp, 413)
    expect_ok(small_server.client.get("/health"))
    assert small_server.client.get(f"/queues/{queue}/jobs").json()["job"] is None


def test_body_just_under_the_limit_is_accepted(small_server: Server, queue: str) -> None:
    data = "y" * (MAX_PAYLOAD - 100)
    job_id = push(small_server.client, queue, data=data)
    assert get_job(small_server.client, job_id)["data"] == data


def test_default_body_limit(client: httpx.Client, queue: str) -> None:
    """The default server refuses bodies over its 16 MiB default."""
    resp = client.post(f"/queues/{queue}/jobs", content=b" " * (16 * 1024 * 1024 + 1))
    expect_error(resp, 413)
    expect_ok(client.get("/health"))


def test_many_bad_requests_in_a_row(small_server: Server, sentinel: dict[str, Any]) -> None:
    client = small_server.client
    for i in range(200):
        resp = client.post("/queues/flood/jobs", content=b"{" * (i % 7 + 1))
        expect_error(resp, 400)
    assert get_job(client, sentinel["id"]) == sentinel
    assert client.get("/queues/flood/jobs").json()["job"] is None


def test_absurdly_nested_data_is_refused(server: Server, queue: str) -> None:
    """100,000 nested arrays (bunqueue 2.9.5: 400 `Job data must be JSON serializable`):
    a 400 that names the bound, the server unharmed and nothing pushed."""
    client = server.client
    other = push(client, queue, data={"keep": 1})
    for data in ("[" * 100_000 + "]" * 100_000, '{"a":' * 100_000 + "1" + "}" * 100_000):
        resp = client.post(f"/queues/{queue}/jobs", content=b'{"data":' + data.encode() + b"}")
        expect_error(resp, 400, f"data is nested more than {MAX_DEPTH} levels deep")
    expect_ok(client.get("/health"))
    assert get_job(client, other)["data"] == {"keep": 1}
    assert pull(client, queue)[0]["id"] == other
    assert client.get(f"/queues/{queue}/jobs").json()["job"] is None


def test_the_deepest_accepted_data_reads_back_everywhere(server: Server, queue: str) -> None:
    """A payload at the bound is stored and shown whole by every API (the HTTP job, the
    management API, bunqueue's protocol), and so is a result at the bound."""
    client = server.client
    deep = nested(MAX_DEPTH)
    job_id = push(client, queue, data=deep)
    assert get_job(client, job_id)["data"] == deep
    detail = client.get(f"/api/queues/{queue}/jobs/{job_id}")
    assert detail.status_code == 200, detail.text
    assert detail.json()["data"]["data"] == deep
    with Conn(server.tcp_port) as conn:
        assert conn.call_ok("GetJob", id=job_id)["job"]["data"] == deep
    job, token = pull(client, queue)
    assert job["data"] == deep
    expect_ok(client.post(f"/jobs/{job_id}/ack", json={"result": deep, "token": token}))
    assert get_job(client, job_id)["result"] == deep


TEN_YEARS_MS = 315_360_000_000
KEY_RULE = "must be a non-empty string of at most 512 bytes without control characters"
# hopper's bounds of the push fields (docs/compatibility.md, "push field limits"): the
# widest value accepted, the nearest one refused, and the exact message.
LIMITS: list[tuple[str, Any, Any, str]] = [
    (
        "priority",
        2**31 - 1,
        2**31,
        "priority must be an integer between -2147483647 and 2147483647",
    ),
    (
        "priority",
        -(2**31) + 1,
        -(2**31),
        "priority must be an integer between -2147483647 and 2147483647",
    ),
    (
        "delay",
        TEN_YEARS_MS,
        TEN_YEARS_MS + 1,
        f"delay must be an integer between 0 and {TEN_YEARS_MS}",
    ),
    ("maxAttempts", 10_000, 10_001, "maxAttempts must be an integer between 1 and 10000"),
    ("backoff", 604_800_000, 604_800_001, "backoff must be an integer between 0 and 604800000"),
    # The upper end: a job with a 1 ms ttl may be gone before it is read back (its low
    # end is test_the_shortest_ttl_is_taken).
    ("ttl", TEN_YEARS_MS, TEN_YEARS_MS + 1, f"ttl must be an integer between 1 and {TEN_YEARS_MS}"),
    (
        "timeout",
        TEN_YEARS_MS,
        TEN_YEARS_MS + 1,
        f"timeout must be an integer between 1 and {TEN_YEARS_MS}",
    ),
    ("jobId", "j" * 512, "j" * 513, f"jobId {KEY_RULE}"),
    ("uniqueKey", "u" * 512, "u" * 513, f"uniqueKey {KEY_RULE}"),
    ("groupId", "g" * 512, "g" * 513, f"groupId {KEY_RULE}"),
    (
        "name",
        "n" * 256,
        "n" * 257,
        "name must be a non-empty string of at most 256 bytes without control characters",
    ),
    ("tags", ["t"] * 64, ["t"] * 65, "tags has more than 64 entries"),
    ("tags", ["t" * 512], ["t" * 513], f"tags {KEY_RULE}"),
]


# Fields the job object shows under another name.
READ_BACK: dict[str, Callable[[dict[str, Any]], Any]] = {
    "delay": lambda job: job["runAt"] - job["createdAt"],
    "jobId": lambda job: job["id"],
}


@pytest.mark.parametrize(
    ("name", "widest", "refused", "message"),
    LIMITS,
    ids=[f"{x[0]}-{i}" for i, x in enumerate(LIMITS)],
)
def test_push_field_limits(
    small_server: Server, queue: str, name: str, widest: Any, refused: Any, message: str
) -> None:
    client = small_server.client
    resp = client.post(f"/queues/{queue}/jobs", json={"data": 1, name: refused})
    expect_error(resp, 400, message)
    job = get_job(client, push(client, queue, **{name: widest}))
    assert READ_BACK.get(name, lambda j: j[name])(job) == widest


def test_the_shortest_ttl_is_taken(small_server: Server, queue: str) -> None:
    """ttl 0 is refused and 1 taken; not read back, since that job may expire first."""
    client = small_server.client
    resp = client.post(f"/queues/{queue}/jobs", json={"data": 1, "ttl": 0})
    expect_error(resp, 400, f"ttl must be an integer between 1 and {TEN_YEARS_MS}")
    assert push(client, queue, ttl=1)


def test_unknown_depends_on(small_server: Server, queue: str) -> None:
    """bunqueue 2.9.5 answers the same status with `Dependency job not found: <id>`."""
    known = push(small_server.client, queue)
    resp = small_server.client.post(
        f"/queues/{queue}/jobs", json={"data": 1, "dependsOn": [known, "no-such-job"]}
    )
    expect_error(resp, 400, "dependsOn references an unknown job: no-such-job")
    assert pull(small_server.client, queue)[0]["id"] == known
    assert small_server.client.get(f"/queues/{queue}/jobs").json()["job"] is None


def test_the_nesting_bound_holds_over_bunqueue_s_protocol(server: Server, queue: str) -> None:
    """The same bound and messages for PUSH, Update and ACK over the TCP port."""
    too_deep = nested(MAX_DEPTH + 1)
    with Conn(server.tcp_port) as conn:
        reply = conn.call("PUSH", queue=queue, data=too_deep)
        assert reply["ok"] is False
        assert reply["error"] == f"data is nested more than {MAX_DEPTH} levels deep"
        job_id = conn.call_ok("PUSH", queue=queue, data={"n": 1})["id"]
        reply = conn.call("Update", id=job_id, data=too_deep)
        assert (reply["ok"], reply["error"]) == (
            False,
            f"data is nested more than {MAX_DEPTH} levels deep",
        )
        assert conn.call_ok("PULL", queue=queue)["job"]["id"] == job_id
        reply = conn.call("ACK", id=job_id, result=too_deep)
        assert (reply["ok"], reply["error"]) == (
            False,
            f"result is nested more than {MAX_DEPTH} levels deep",
        )
        job = conn.call_ok("GetJob", id=job_id)["job"]
        assert (job["state"], job["data"]) == ("active", {"n": 1})

"""bunqueue's binary TCP protocol spoken raw: framing edges, every bad input, and the 18
tier-1 commands (PUSH, PUSHB, PULL, PULLB, ACK, ACKB, FAIL, JobHeartbeat(B), Progress,
MoveToWait, RegisterWorker, Heartbeat, UnregisterWorker, Ping, Auth, SubscribeEvents,
UnsubscribeEvents), as /work/shared/research/bunqueue-tcp-protocol.md describes them.

The target is hopper (`python -m hopper serve`, its `--tcp-port`), or with
HOPPER_TCP_TEST_TARGET=bunqueue the real bunqueue 2.9.5 under bench/peers, which these
tests were validated on. Every bad input runs under `no_harm`: jobs pushed before it are
all still pullable afterwards, from another connection. Every frame read is checked to
hold no 64-bit integer (see tcp_client.Conn)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from support import Server, ServerFactory, get_job, wait_until
from tcp_client import (
    MAX_FRAME,
    ON_BUNQUEUE,
    UNDEFINED,
    UNDEFINED_BYTES,
    Conn,
    Raw,
    frame,
    header,
    int64,
    leaf_markers,
    pack,
    raw_frame,
    raw_map,
    same,
    uint64,
    without_req_id,
)

FLOAT64 = 0xCB
OK = {"ok": True, "id": UNDEFINED}
"""The plain OK reply (besides reqId): `id` is present, and undefined."""
LONG_PULL_MS = 1500
MAX_RUNNING = 50
"""Commands one connection runs at once; later frames wait for a slot."""
TOKENS = ("tok-a", "tok-b")
NOT_FOUND = "not found"
"""What the SDK's worker looks for in an ACK/FAIL error (or "not in processing") to
treat the job as lost: required of every server's wording of such errors."""
ANY_WORDING = ""
"""A gist for expect_error: bunqueue's exact text on bunqueue, any message elsewhere."""


def words(text: str) -> frozenset[str]:
    return frozenset(text.split())


# The job object of PULL/PULLB (47 keys, in bunqueue 2.9.5).
JOB_KEYS = words(
    """
    id queue name data priority createdAt runAt startedAt completedAt attempts maxAttempts
    backoff backoffConfig ttl timeout uniqueKey customId dependsOn parentId childrenIds
    childrenCompleted tags groupId progress progressMessage stacktrace removeOnComplete
    removeOnFail repeat lastHeartbeat stallTimeout stallCount stackTraceLimit keepLogs
    sizeLimit failParentOnFailure removeDependencyOnFailure continueParentOnFailure
    ignoreDependencyOnFailure deduplicationTtl deduplicationExtend deduplicationReplace
    debounceId debounceTtl durable lifo timeline
    """
)
JOB_TIMES = ("createdAt", "runAt", "startedAt", "lastHeartbeat")
WORKER_KEYS = words(
    """
    workerId name queues concurrency hostname pid status registeredAt lastSeen activeJobs
    processedJobs failedJobs currentJob
    """
)


# ----- targets and helpers -------------------------------------------------------------


@pytest.fixture
def listener(connect: Callable[[], Conn], queue: str) -> Conn:
    """A connection subscribed to the events of `queue`: how the tests see a job's result
    and progress message (fields that hopper's HTTP job object names differently)."""
    c = connect()
    c.call_ok("SubscribeEvents", queue=queue)
    return c


def push_many(c: Conn, queue: str, n: int, **opts: Any) -> list[str]:
    jobs = [{"name": "job", "data": {"i": i}, **opts} for i in range(n)]
    ids = c.call_ok("PUSHB", queue=queue, jobs=jobs)["ids"]
    assert len(ids) == n
    return ids  # type: ignore[no-any-return]


def pull_locked(c: Conn, queue: str) -> tuple[dict[str, Any], str]:
    reply = c.call_ok("PULL", queue=queue, owner="tester", lockTtl=30_000)
    assert reply["job"] is not None and isinstance(reply["token"], str), reply
    return reply["job"], reply["token"]


def state_of(server: Server, job_id: str) -> str:
    state: str = get_job(server.client, job_id)["state"]
    return state


def wait_state(server: Server, job_id: str, state: str) -> None:
    got = wait_until(lambda: state_of(server, job_id) == state, timeout=10.0)
    assert got, f"job {job_id} is {state_of(server, job_id)}, not {state}"


def expect_error(reply: dict[str, Any], message: str | None = None, *gist: str) -> str:
    """An error reply with `message` (None: any). With a `gist`, `message` is bunqueue's
    wording, required on bunqueue only; any server's message must contain the gist's
    words (case-insensitive): hopper words its handler errors its own way."""
    assert reply["ok"] is False, reply
    error = reply["error"]
    assert isinstance(error, str) and error, reply
    if message is not None and (ON_BUNQUEUE or not gist):
        assert error == message
    assert all(word.lower() in error.lower() for word in gist), (error, gist)
    return error


@contextlib.contextmanager
def no_harm(server: Server, token: str | None = None) -> Iterator[None]:
    """Jobs pushed before the block are all still pullable after it, from a connection of
    their own, and that connection works (the bad input hurt nobody else)."""
    queue = f"bystander-{time.monotonic_ns()}"
    with Conn(server.tcp_port, token=token) as c:
        ids = push_many(c, queue, 5)
    yield
    with Conn(server.tcp_port, token=token) as c:
        c.barrier()
        jobs = c.call_ok("PULLB", queue=queue, count=100)["jobs"]
        assert sorted(j["id"] for j in jobs) == sorted(ids)


def assert_usable(c: Conn) -> None:
    """The connection still answers."""
    reply = c.call("Ping")
    assert reply["ok"] is True and reply["data"]["pong"] is True, reply


# ----- framing, matching, pipelining ---------------------------------------------------


def test_reply_echoes_req_id_verbatim_whatever_its_type(conn: Conn) -> None:
    """Pipelined in one write; each reply carries its request's reqId with its type, and
    a request without one gets reqId undefined (`d4 00 00`)."""
    req_ids: list[Any] = ["s-1", "", "żółw", 42, -7, 0, 2.5, ["a", 1], {"k": "v"}]
    conn.send(*({"cmd": "Ping", "reqId": r} for r in req_ids), {"cmd": "Ping"})
    for r in req_ids:
        reply = conn.reply(r)
        assert same(reply["reqId"], r) and reply["ok"] is True, reply
    f = conn.reply_frame(UNDEFINED)
    assert f.value["ok"] is True
    assert pack("reqId") + UNDEFINED_BYTES in f.body


def test_replies_go_out_in_completion_order(conn: Conn, queue: str) -> None:
    conn.send(
        {"cmd": "PULL", "queue": queue, "timeout": LONG_PULL_MS, "reqId": "slow"},
        {"cmd": "Ping", "reqId": "fast"},
    )
    sent = time.monotonic()
    assert conn.next_reply()["reqId"] == "fast"
    slow = conn.next_reply()
    assert slow["reqId"] == "slow" and slow["job"] is None, slow
    assert time.monotonic() - sent >= LONG_PULL_MS / 1000 * 0.6


@pytest.mark.parametrize(
    ("blocking", "ping_first"),
    [(MAX_RUNNING - 1, True), (MAX_RUNNING, False)],
    ids=["49-running-ping-answered", "50-running-ping-waits"],
)
def test_at_most_50_commands_run_per_connection(
    conn: Conn, queue: str, blocking: int, ping_first: bool
) -> None:
    """Long PULLs on an empty queue hold their slots; a Ping sent after them is answered
    at once while a slot is free, and only after a PULL ends when all 50 are taken."""
    pulls: list[dict[str, Any]] = [
        {"cmd": "PULL", "queue": queue, "timeout": LONG_PULL_MS, "reqId": f"pull-{i}"}
        for i in range(blocking)
    ]
    conn.send(*pulls, {"cmd": "Ping", "reqId": "ping"})
    order = [conn.next_reply()["reqId"] for _ in range(blocking + 1)]
    assert (order[0] == "ping") is ping_first, order[:3]
    assert sorted(order) == sorted(["ping", *(p["reqId"] for p in pulls)])


def test_frames_split_across_writes(conn: Conn, queue: str) -> None:
    """Byte by byte, and cut anywhere: inside a header, inside a body, across frames."""
    frames = [
        frame({"cmd": "Ping", "reqId": "a"}),
        frame({"cmd": "PUSH", "queue": queue, "data": {"x": "y" * 300}, "reqId": "b"}),
        frame({"cmd": "Ping", "reqId": "c"}),
    ]
    for byte in frames[0]:
        conn.send_raw(bytes([byte]))
    assert conn.reply("a")["ok"] is True
    stream = b"".join(frames)
    cuts = [2, len(frames[0]) + 3, len(frames[0]) + 200, len(frames[0]) + len(frames[1]) + 1]
    for start, end in zip([0, *cuts], [*cuts, len(stream)], strict=True):
        conn.send_raw(stream[start:end])
        time.sleep(0.02)  # so the pieces reach the server apart (not for ordering)
    assert conn.reply("a")["ok"] is True
    assert isinstance(conn.reply("b")["id"], str)
    assert conn.reply("c")["ok"] is True


def test_several_frames_in_one_write(conn: Conn, queue: str) -> None:
    pushes = [{"cmd": "PUSH", "queue": queue, "data": {"i": i}, "reqId": i} for i in range(100)]
    conn.send(*pushes, {"cmd": "PULLB", "queue": queue, "count": 1000, "reqId": "all"})
    ids = {conn.reply(i)["id"] for i in range(100)}
    assert len(ids) == 100
    # The PULLB may start before some pushes finish: collect the rest afterwards.
    pulled = {j["id"] for j in conn.reply("all")["jobs"]}
    pulled |= {j["id"] for j in conn.call_ok("PULLB", queue=queue, count=1000)["jobs"]}
    assert pulled == ids


@pytest.mark.parametrize("length", [MAX_FRAME + 1, 2**32 - 1], ids=["64MiB+1", "4GiB-1"])
def test_frame_over_64_mib_is_refused_then_closed(target: Server, conn: Conn, length: int) -> None:
    with no_harm(target):
        assert_usable(conn)
        conn.send_raw(header(length) + b"\xde\x00\x01")
        reply = conn.reply(UNDEFINED)
        assert reply["ok"] is False
        assert reply["error"] == f"Frame too large: {length} bytes exceeds maximum {MAX_FRAME}"
        assert conn.wait_closed(10.0), "the connection stayed open"


@pytest.mark.parametrize(
    ("body", "error", "req_id"),
    [
        # Not MessagePack at all, or not one whole value.
        (b"", "Invalid command format", UNDEFINED),
        (b"\xde\x00\x05", "Invalid command format", UNDEFINED),
        (b"\xd9\x10abc", "Invalid command format", UNDEFINED),
        (b"\x82\xa3cmd", "Invalid command format", UNDEFINED),
        (b"\xdb\xff\xff\xff\xff", "Invalid command format", UNDEFINED),
        (pack({"cmd": "Ping", "reqId": "t"}) + b"\x00", "Invalid command format", UNDEFINED),
        # JavaScript-falsy values fail as "format" too (bunqueue checks `!command`).
        (pack(None), "Invalid command format", UNDEFINED),
        (pack(False), "Invalid command format", UNDEFINED),
        (pack(0), "Invalid command format", UNDEFINED),
        (pack(""), "Invalid command format", UNDEFINED),
        # Decodes, but not a map with a cmd: only a string reqId is echoed.
        (pack([1, 2]), "Invalid command", UNDEFINED),
        (pack(5), "Invalid command", UNDEFINED),
        (pack("Ping"), "Invalid command", UNDEFINED),
        (pack({"x": 1}), "Invalid command", UNDEFINED),
        (pack({"reqId": "m"}), "Invalid command", "m"),
        (pack({"reqId": 9}), "Invalid command", UNDEFINED),
        (pack({"cmd": "", "reqId": "e"}), "Invalid command", "e"),
        (pack({"cmd": None, "reqId": "n"}), "Invalid command", "n"),
        # A known command name is case-sensitive.
        (pack({"cmd": "Nope", "reqId": "u"}), "Unknown command: Nope", "u"),
        (pack({"cmd": "ping", "reqId": 7}), "Unknown command: ping", 7),
    ],
)
def test_undecodable_or_commandless_frame_gets_an_error_and_the_connection_stays(
    target: Server, conn: Conn, body: bytes, error: str, req_id: Any
) -> None:
    with no_harm(target):
        conn.send_raw(raw_frame(body))
        reply = conn.reply(req_id)
        assert without_req_id(reply) == {"ok": False, "error": error}, reply
        assert_usable(conn)


Q = "<queue>"
"""Stands for the test's queue in BAD_FIELDS."""

# A command with one bad field: bunqueue's exact error (None: any message) and the gist
# any compatible server's message must contain (the field it names).
BAD_FIELDS = [
    pytest.param("PULL", {"queue": Q, "timeout": "5"}, "timeout must be a number", "timeout"),
    pytest.param("PULL", {"queue": Q, "timeout": uint64(5)}, "timeout must be a number", "timeout"),
    pytest.param(
        "PULL", {"queue": Q, "timeout": 60_001}, "timeout must be at most 60000", "timeout"
    ),
    pytest.param(
        "PUSH", {"queue": Q, "data": {}, "delay": int64(5)}, "delay must be a number", "delay"
    ),
    pytest.param(
        "PUSH", {"queue": Q, "data": {}, "delay": "10"}, "delay must be a number", "delay"
    ),
    pytest.param(
        "PUSH", {"queue": Q, "data": {}, "priority": 1.5}, "priority must be an integer", "priority"
    ),
    pytest.param(
        "PUSH",
        {"queue": Q, "data": {}, "maxAttempts": 0},
        "maxAttempts must be at least 1",
        "maxAttempts",
    ),
    pytest.param(
        "PUSH",
        {"queue": Q, "data": Raw(b"\x81" + pack("n") + int64(1))},
        "Job data must be JSON serializable",
        "data",
    ),
    pytest.param(
        "PUSH", {"queue": Q + " !", "data": {}}, "Queue name contains invalid characters", "queue"
    ),
    pytest.param("PUSH", {"data": {}}, "Queue name is required", "queue"),
    pytest.param("PULLB", {"queue": Q, "count": "3"}, "count must be a number", "count"),
    pytest.param("PULLB", {"queue": Q, "count": 0}, "count must be at least 1", "count"),
    pytest.param("PUSHB", {"queue": Q, "jobs": "x"}, None, ANY_WORDING),
    pytest.param("PUSHB", {"queue": Q}, None, ANY_WORDING),
    pytest.param("ACKB", {}, None, ANY_WORDING),
    pytest.param("ACKB", {"ids": "abc"}, None, ANY_WORDING),
    pytest.param("ACK", {}, None, ANY_WORDING),
    pytest.param("JobHeartbeatB", {}, None, ANY_WORDING),
    pytest.param("SubscribeEvents", {}, "Queue name is required", "queue"),
]


@pytest.mark.parametrize(("cmd", "fields", "message", "gist"), BAD_FIELDS)
def test_wrong_field_gets_an_error_and_the_connection_stays(
    target: Server,
    conn: Conn,
    queue: str,
    cmd: str,
    fields: dict[str, Any],
    message: str | None,
    gist: str,
) -> None:
    fields = {k: v.replace(Q, queue) if isinstance(v, str) else v for k, v in fields.items()}
    with no_harm(target):
        conn.send_raw(raw_frame(raw_map({"cmd": cmd, **fields, "reqId": "x"})))
        expect_error(conn.reply("x"), message, gist)
        assert_usable(conn)
    assert conn.call_ok("PULLB", queue=queue, count=10)["jobs"] == []


def test_partial_frame_is_closed_after_the_idle_timeout(start_target: ServerFactory) -> None:
    """TCP_IDLE_TIMEOUT_MS closes a connection that leaves a frame unfinished; idle
    connections with nothing pending stay open, however long."""
    timeout_s = 0.5
    server = start_target(TCP_IDLE_TIMEOUT_MS=str(int(timeout_s * 1000)))
    port = server.tcp_port
    with no_harm(server), Conn(port) as idle, Conn(port) as used:
        used.barrier()
        started = time.monotonic()
        with Conn(port) as half_body, Conn(port) as half_header:
            half_body.send_raw(frame({"cmd": "Ping", "reqId": "h"})[:-3])
            half_header.send_raw(b"\x00\x00")
            assert half_body.wait_closed(10.0)
            assert half_header.wait_closed(10.0)
            assert half_body.replies == [] and half_header.replies == []
        assert time.monotonic() - started >= timeout_s * 0.6
        # Three idle timeouts in all, and the idle connections are still there.
        assert not idle.wait_closed(max(0.0, started + 3 * timeout_s - time.monotonic()))
        assert not used.wait_closed(0.1)
        assert_usable(idle)
        assert_usable(used)


def test_a_client_that_never_reads_is_disconnected(start_target: ServerFactory) -> None:
    """Replies pile up for a client that stops reading; past TCP_MAX_WRITE_QUEUE_BYTES
    queued, the server drops it, and serves everyone else."""
    budget = 1 << 20
    server = start_target(TCP_MAX_WRITE_QUEUE_BYTES=str(budget))
    # Each Ping echoes its 128 KiB reqId: 256 of them are 32 MiB of replies, far more than
    # the socket buffers (the client's receive buffer is kept small) and the budget.
    big = frame({"cmd": "Ping", "reqId": "x" * (128 * 1024)})
    with no_harm(server), Conn(server.tcp_port, rcvbuf=64 * 1024) as sink:
        with contextlib.suppress(OSError):  # reset once the server drops the connection
            for _ in range(256):
                sink.send_raw(big)
        assert sink.wait_closed(15.0), "a client that never reads was kept"
        with Conn(server.tcp_port) as other:
            assert_usable(other)


# ----- tier-1 commands -----------------------------------------------------------------


def test_push_returns_the_id_and_a_custom_id_is_kept(
    target: Server, conn: Conn, queue: str
) -> None:
    reply = conn.call("PUSH", queue=queue, name="n", data={"a": [1, "b", None]})
    assert set(reply) == {"ok", "id", "reqId"} and reply["ok"] is True
    assert isinstance(reply["id"], str) and reply["id"]
    job = get_job(target.client, reply["id"])
    assert (job["name"], job["data"], job["state"]) == ("n", {"a": [1, "b", None]}, "waiting")
    custom = f"custom-{queue}"
    assert conn.call_ok("PUSH", queue=queue, data={}, jobId=custom)["id"] == custom
    # Pushing the same custom id again answers the existing job.
    assert conn.call_ok("PUSH", queue=queue, data={"other": 1}, jobId=custom)["id"] == custom


def test_pushb_returns_ids_in_input_order(target: Server, conn: Conn, queue: str) -> None:
    jobs: list[dict[str, Any]] = [{"name": f"j{i}", "data": {"i": i}} for i in range(20)]
    jobs[3]["customId"] = f"c-{queue}"
    reply = conn.call("PUSHB", queue=queue, jobs=jobs)
    assert set(reply) == {"ok", "ids", "reqId"} and reply["ok"] is True
    assert reply["ids"][3] == f"c-{queue}"
    for i, job_id in enumerate(reply["ids"]):
        assert get_job(target.client, job_id)["data"] == {"i": i}


@pytest.mark.parametrize(
    ("bad", "error", "gist"),
    [
        ({"delay": -1}, "jobs[2]: delay must be at least 0", "delay"),
        ({"maxAttempts": 0}, "jobs[2]: maxAttempts must be at least 1", "maxAttempts"),
        ({"priority": "high"}, "jobs[2]: priority must be a number", "priority"),
        (
            {"dependsOn": ["no-such-job"]},
            "jobs[2]: Dependency job not found: no-such-job",
            "depend",
        ),
    ],
)
def test_pushb_with_a_bad_item_rejects_the_whole_batch(
    target: Server, conn: Conn, queue: str, bad: dict[str, Any], error: str, gist: str
) -> None:
    jobs = [{"data": {"i": i}} for i in range(4)]
    jobs[2].update(bad)
    with no_harm(target):
        reply = conn.call("PUSHB", queue=queue, jobs=jobs)
        assert expect_error(reply, error, gist).startswith("jobs[2]: ")
    assert conn.call_ok("PULLB", queue=queue, count=10)["jobs"] == []


def test_pull_with_and_without_owner(conn: Conn, queue: str) -> None:
    """With an owner the reply carries a lock token (null when no job); without, no
    token key at all."""
    push_many(conn, queue, 2)
    locked = conn.call("PULL", queue=queue, owner="w1", lockTtl=30_000)
    assert set(locked) == {"ok", "job", "token", "reqId"}
    assert set(locked["job"]) == JOB_KEYS and isinstance(locked["token"], str)
    plain = conn.call("PULL", queue=queue)
    assert set(plain) == {"ok", "job", "reqId"} and set(plain["job"]) == JOB_KEYS
    assert [locked["job"]["data"], plain["job"]["data"]] == [{"i": 0}, {"i": 1}]
    assert without_req_id(conn.call("PULL", queue=queue, owner="w1")) == {
        "ok": True,
        "job": None,
        "token": None,
    }
    assert without_req_id(conn.call("PULL", queue=queue)) == {"ok": True, "job": None}


def test_pullb_takes_up_to_count(conn: Conn, queue: str) -> None:
    ids = push_many(conn, queue, 5)
    first = conn.call("PULLB", queue=queue, count=3, owner="w1")
    assert set(first) == {"ok", "jobs", "tokens", "reqId"}
    assert [j["id"] for j in first["jobs"]] == ids[:3] and len(first["tokens"]) == 3
    assert all(set(j) == JOB_KEYS for j in first["jobs"])
    rest = conn.call("PULLB", queue=queue, count=10)
    assert set(rest) == {"ok", "jobs", "reqId"}
    assert [j["id"] for j in rest["jobs"]] == ids[3:]
    assert without_req_id(conn.call("PULLB", queue=queue, count=10, owner="w1")) == {
        "ok": True,
        "jobs": [],
        "tokens": [],
    }


def test_ping_time_and_job_timestamps_are_float64(conn: Conn, queue: str) -> None:
    f = conn.reply_frame(conn.request("Ping"))
    assert without_req_id(f.value)["data"]["pong"] is True
    assert set(without_req_id(f.value)) == {"ok", "data"} and set(f.value["data"]) == {
        "pong",
        "time",
    }
    assert leaf_markers(f.body)[("data", "time")] == FLOAT64
    assert abs(f.value["data"]["time"] - time.time() * 1000) < 60_000
    push_many(conn, queue, 1)
    f = conn.reply_frame(conn.request("PULL", queue=queue, owner="w1"))
    markers = leaf_markers(f.body)
    for key in JOB_TIMES:
        assert markers[("job", key)] == FLOAT64, key
    timeline = f.value["job"]["timeline"]
    assert all(
        markers[("job", "timeline", i, "timestamp")] == FLOAT64 for i in range(len(timeline))
    )


def test_ack(target: Server, conn: Conn, listener: Conn, queue: str) -> None:
    push_many(conn, queue, 2)
    job, token = pull_locked(conn, queue)
    f = conn.reply_frame(conn.request("ACK", id=job["id"], token=token, result={"r": 1}))
    assert without_req_id(f.value) == OK
    assert pack("id") + UNDEFINED_BYTES in f.body
    assert state_of(target, job["id"]) == "completed"
    assert listener.event("completed", job["id"]).value["event"]["data"] == {"r": 1}
    expect_error(
        conn.call("ACK", id=job["id"], token=token),
        f"Job not found or not in processing state: {job['id']}",
        NOT_FOUND,
    )
    other, other_token = pull_locked(conn, queue)
    expect_error(
        conn.call("ACK", id=other["id"], token="not-the-token"),
        f"Invalid or expired lock token for job {other['id']}",
        "lock token",
    )
    expect_error(
        conn.call("ACK", id=other["id"]), f"Lock token required for job {other['id']}", "token"
    )
    assert without_req_id(conn.call("ACK", id=other["id"], token=other_token)) == OK


def test_ackb(target: Server, conn: Conn, listener: Conn, queue: str) -> None:
    push_many(conn, queue, 3)
    pulled = conn.call_ok("PULLB", queue=queue, count=3, owner="w1")
    ids, tokens = [j["id"] for j in pulled["jobs"]], pulled["tokens"]
    expect_error(
        conn.call("ACKB", ids=ids, tokens=tokens[:2]),
        "ACKB tokens length must match ids length",
        "length",
    )
    expect_error(
        conn.call("ACKB", ids=ids, tokens=tokens, results=[1]),
        "ACKB results length must match ids length",
        "length",
    )
    reply = conn.call("ACKB", ids=ids, tokens=tokens, results=[{"n": i} for i in range(3)])
    assert without_req_id(reply) == OK
    for i, job_id in enumerate(ids):
        assert state_of(target, job_id) == "completed"
        assert listener.event("completed", job_id).value["event"]["data"] == {"n": i}
    # Acking a completed job again is an error, not an ignored item.
    expect_error(
        conn.call("ACKB", ids=ids[:1], tokens=tokens[:1]),
        f"Job not found or not in processing state: {ids[0]}",
        NOT_FOUND,
    )


def test_ackb_ignores_a_job_already_finalized_by_its_timeout(
    target: Server, conn: Conn, queue: str
) -> None:
    """A job whose processing `timeout` ran out was failed (retried) by the server; a
    late ACKB of it is reported in ignoredIndices/ignoredIds, the others are acked."""
    slow = conn.call_ok("PUSH", queue=queue, data={}, timeout=200)["id"]
    fast = conn.call_ok("PUSH", queue=queue, data={})["id"]
    pulled = conn.call_ok("PULLB", queue=queue, count=2, owner="w1")
    assert [j["id"] for j in pulled["jobs"]] == [slow, fast]
    assert wait_until(lambda: state_of(target, slow) != "active", timeout=10.0)
    reply = conn.call("ACKB", ids=[slow, fast], tokens=pulled["tokens"])
    assert without_req_id(reply) == {
        "ok": True,
        "data": {"ignoredIndices": [0], "ignoredIds": [slow]},
    }
    assert state_of(target, fast) == "completed"
    assert state_of(target, slow) in ("delayed", "waiting")


@pytest.mark.parametrize(
    ("push_opts", "fail_opts", "state"),
    [
        ({"maxAttempts": 3}, {}, "delayed"),
        ({"maxAttempts": 3}, {"unrecoverable": True}, "failed"),
        ({"maxAttempts": 1}, {}, "failed"),
    ],
    ids=["attempts-left", "unrecoverable", "last-attempt"],
)
def test_fail(
    target: Server,
    conn: Conn,
    queue: str,
    push_opts: dict[str, Any],
    fail_opts: dict[str, Any],
    state: str,
) -> None:
    """With attempts left the job waits for a retry (delayed, by its backoff); otherwise
    it fails for good. A late outcome from the same lease: on a job waiting for its retry,
    FAIL is ignored ("already-finalized"); bunqueue lets the late ACK complete it, hopper
    ignores it the same way (the lease it answers for is gone: docs/compatibility.md). On
    a failed job both are errors."""
    conn.call_ok("PUSH", queue=queue, data={}, **push_opts)
    job, token = pull_locked(conn, queue)
    reply = conn.call(
        "FAIL", id=job["id"], token=token, error="boom", stack=["Error: boom", "at x"], **fail_opts
    )
    assert without_req_id(reply) == OK
    failed = get_job(target.client, job["id"])
    assert (failed["state"], failed["attempts"]) == (state, 1)
    late_fail = conn.call("FAIL", id=job["id"], token=token, error="again")
    late_ack = conn.call("ACK", id=job["id"], token=token)
    if state == "delayed":
        assert without_req_id(late_fail) == {
            "ok": True,
            "data": {"applied": False, "reason": "already-finalized"},
        }
        if ON_BUNQUEUE:
            assert without_req_id(late_ack) == OK
            assert state_of(target, job["id"]) == "completed"
        else:
            assert without_req_id(late_ack) == without_req_id(late_fail)
            assert state_of(target, job["id"]) == "delayed"
    else:
        missing = f"Job not found or not in processing state: {job['id']}"
        expect_error(late_fail, missing, NOT_FOUND)
        expect_error(late_ack, missing, NOT_FOUND)
        assert state_of(target, job["id"]) == "failed"


def test_job_heartbeats_renew_the_lock(conn: Conn, queue: str) -> None:
    push_many(conn, queue, 2)
    first, token = pull_locked(conn, queue)
    second, second_token = pull_locked(conn, queue)
    renewed = {"ok": True, "data": {"ok": True}}
    assert without_req_id(conn.call("JobHeartbeat", id=first["id"], token=token)) == renewed
    reply = conn.call("JobHeartbeat", id=first["id"], token=token, duration=60_000)
    assert without_req_id(reply) == renewed
    for bad in ({"id": first["id"], "token": "wrong"}, {"id": "no-such-job"}):
        expect_error(
            conn.call("JobHeartbeat", **bad),
            "Job not found or not active (or invalid token)",
            ANY_WORDING,
        )
    reply = conn.call(
        "JobHeartbeatB",
        ids=[first["id"], second["id"], "no-such-job"],
        tokens=[token, second_token, "x"],
    )
    assert without_req_id(reply) == {"ok": True, "data": {"ok": True, "count": 2}}
    reply = conn.call("JobHeartbeatB", ids=[first["id"]], tokens=["wrong"])
    assert without_req_id(reply) == {"ok": True, "data": {"ok": True, "count": 0}}
    conn.call_ok("ACKB", ids=[first["id"], second["id"]], tokens=[token, second_token])


def test_progress(target: Server, conn: Conn, listener: Conn, queue: str) -> None:
    push_many(conn, queue, 1)
    job, _ = pull_locked(conn, queue)
    assert without_req_id(conn.call("Progress", id=job["id"], progress=50, message="half")) == OK
    event = listener.event("progress", job["id"]).value["event"]
    assert event["progress"] == 50
    assert event["data"] == {"progress": 50, "message": "half"}
    assert get_job(target.client, job["id"])["progress"] == 50
    assert without_req_id(conn.call("Progress", id=job["id"], progress=75)) == OK
    assert get_job(target.client, job["id"])["progress"] == 75
    waiting = conn.call_ok("PUSH", queue=queue, data={}, delay=60_000)["id"]
    expect_error(
        conn.call("Progress", id=waiting, progress=1),
        "Job is not active (current state: delayed)",
        "not active",
    )
    expect_error(conn.call("Progress", id="no-such-job", progress=1), "Job not found", NOT_FOUND)


def test_move_to_wait(target: Server, conn: Conn, queue: str) -> None:
    push_many(conn, queue, 1)
    job, token = pull_locked(conn, queue)
    expect_error(
        conn.call("MoveToWait", id=job["id"], token="wrong"),
        f"Invalid or expired lock token for job {job['id']}",
        "lock token",
    )
    assert without_req_id(conn.call("MoveToWait", id=job["id"], token=token)) == OK
    assert state_of(target, job["id"]) == "waiting"
    # Waiting: a no-op.
    assert without_req_id(conn.call("MoveToWait", id=job["id"])) == OK
    assert state_of(target, job["id"]) == "waiting"
    # Delayed: promoted.
    delayed = conn.call_ok("PUSH", queue=queue, data={}, delay=60_000)["id"]
    assert state_of(target, delayed) == "delayed"
    assert without_req_id(conn.call("MoveToWait", id=delayed)) == OK
    assert state_of(target, delayed) == "waiting"
    # Completed: refused.
    job, token = pull_locked(conn, queue)
    conn.call_ok("ACK", id=job["id"], token=token)
    expect_error(
        conn.call("MoveToWait", id=job["id"]),
        "Cannot move job from state 'completed' to waiting",
        "completed",
    )
    expect_error(
        conn.call("MoveToWait", id="no-such-job"),
        "Cannot move job from state 'unknown' to waiting",
        ANY_WORDING,
    )


def test_worker_registration(conn: Conn, queue: str) -> None:
    worker_id = f"worker-{queue}"
    f = conn.reply_frame(
        conn.request(
            "RegisterWorker",
            name="w",
            queues=[queue],
            concurrency=4,
            workerId=worker_id,
            hostname="box",
            pid=1234,
            startedAt=1_700_000_000_000.0,
        )
    )
    assert set(without_req_id(f.value)) == {"ok", "data"} and f.value["ok"] is True
    data = f.value["data"]
    assert set(data) == WORKER_KEYS
    assert {
        k: data[k] for k in ("workerId", "name", "queues", "concurrency", "hostname", "pid")
    } == {
        "workerId": worker_id,
        "name": "w",
        "queues": [queue],
        "concurrency": 4,
        "hostname": "box",
        "pid": 1234,
    }
    assert (data["status"], data["activeJobs"], data["currentJob"]) == ("active", 0, None)
    markers = leaf_markers(f.body)
    assert markers[("data", "registeredAt")] == markers[("data", "lastSeen")] == FLOAT64
    # Defaults: a server-made id, concurrency 1.
    minimal = conn.call_ok("RegisterWorker", name="w2", queues=[queue])["data"]
    assert isinstance(minimal["workerId"], str) and minimal["workerId"] != worker_id
    assert minimal["concurrency"] == 1
    reply = conn.call("Heartbeat", id=worker_id, activeJobs=1, processed=2, failed=0)
    assert without_req_id(reply) == {"ok": True, "data": {"ok": True}}
    assert without_req_id(conn.call("UnregisterWorker", workerId=worker_id)) == {
        "ok": True,
        "data": {"removed": True},
    }
    expect_error(conn.call("UnregisterWorker", workerId=worker_id), "Worker not found", NOT_FOUND)
    expect_error(conn.call("Heartbeat", id=worker_id), "Worker not found", NOT_FOUND)


# ----- Auth ----------------------------------------------------------------------------


def test_auth_gates_every_command_per_connection(start_target: ServerFactory) -> None:
    server = start_target(AUTH_TOKENS=",".join(TOKENS))
    with (
        no_harm(server, token=TOKENS[0]),
        Conn(server.tcp_port) as c,
        Conn(server.tcp_port) as other,
    ):
        commands: list[tuple[str, dict[str, Any]]] = [
            ("Ping", {}),
            ("PUSH", {"queue": "q", "data": {}}),
            ("PULL", {"queue": "q"}),
            ("SubscribeEvents", {"queue": "q"}),
            ("UnsubscribeEvents", {}),
            ("RegisterWorker", {"name": "w", "queues": ["q"]}),
        ]
        for cmd, fields in commands:
            expect_error(c.call(cmd, **fields), "Not authenticated")
        expect_error(c.call("Auth", token="wrong"), "Invalid token")
        expect_error(c.call("Auth", token=""), "Invalid token")
        expect_error(c.call("Ping"), "Not authenticated")
        assert without_req_id(c.call("Auth", token=TOKENS[1])) == OK
        assert_usable(c)
        c.call_ok("PUSH", queue="q", data={})
        # Authentication belongs to the connection.
        expect_error(other.call("Ping"), "Not authenticated")
        c.call_ok("Auth", token=TOKENS[0])  # again: still fine


def test_auth_without_tokens_configured(conn: Conn) -> None:
    """No AUTH_TOKENS: every command is allowed. bunqueue refuses any Auth as invalid (no
    token matches); hopper accepts it (nothing is required, as on its WebSocket:
    docs/compatibility.md). Either way the connection stays usable."""
    assert_usable(conn)
    reply = conn.call("Auth", token="anything")
    if ON_BUNQUEUE:
        expect_error(reply, "Invalid token")
    else:
        assert without_req_id(reply) == OK
    assert_usable(conn)


# ----- events ---------------------------------------------------------------------------


def event_types(c: Conn) -> list[tuple[str, str, str]]:
    return [
        (e.value["event"]["eventType"], e.value["event"]["queue"], e.value["event"]["jobId"])
        for e in c.events
    ]


def test_events_arrive_only_after_subscribing_and_only_for_that_queue(
    connect: Callable[[], Conn], queue: str
) -> None:
    listener, producer = connect(), connect()
    other_queue = f"{queue}-other"
    before = producer.call_ok("PUSH", queue=queue, data={})["id"]
    listener.barrier()
    assert listener.events == []

    assert without_req_id(listener.call("SubscribeEvents", queue=queue)) == OK
    producer.call_ok("PUSH", queue=other_queue, data={})
    job_id = producer.call_ok("PUSH", queue=queue, data={"n": 1})["id"]
    pushed = listener.event("pushed", job_id)
    assert set(pushed.value) == {"type", "event"}  # no ok, no reqId
    event = pushed.value["event"]
    assert (event["eventType"], event["queue"], event["jobId"]) == ("pushed", queue, job_id)
    assert leaf_markers(pushed.body)[("event", "timestamp")] == FLOAT64
    assert abs(event["timestamp"] - time.time() * 1000) < 60_000

    pulled = producer.call_ok("PULLB", queue=queue, count=10, owner="w1")
    assert [j["id"] for j in pulled["jobs"]] == [before, job_id]
    listener.event("pulled", job_id)
    producer.call_ok("Progress", id=job_id, progress=40)
    assert listener.event("progress", job_id).value["event"]["progress"] == 40
    producer.call_ok("ACK", id=job_id, token=pulled["tokens"][1], result={"done": True})
    assert listener.event("completed", job_id).value["event"]["data"] == {"done": True}
    producer.call_ok("FAIL", id=before, token=pulled["tokens"][0], error="bad", unrecoverable=True)
    failed = listener.event("failed", before).value["event"]
    assert failed["error"] == "bad"
    listener.barrier()
    assert all(q == queue for _, q, _ in event_types(listener)), event_types(listener)
    assert not any(j == before and t == "pushed" for t, _, j in event_types(listener))


def test_unsubscribe_and_resubscribe(connect: Callable[[], Conn], queue: str) -> None:
    listener, producer = connect(), connect()
    second = f"{queue}-second"
    listener.call_ok("SubscribeEvents", queue=queue)
    first_id = producer.call_ok("PUSH", queue=queue, data={})["id"]
    listener.event("pushed", first_id)
    # A new subscription replaces the old one.
    listener.call_ok("SubscribeEvents", queue=second)
    producer.call_ok("PUSH", queue=queue, data={})
    second_id = producer.call_ok("PUSH", queue=second, data={})["id"]
    listener.event("pushed", second_id)
    assert [q for _, q, _ in event_types(listener)] == [queue, second]
    # Unsubscribed: nothing more, whichever queue.
    assert without_req_id(listener.call("UnsubscribeEvents")) == OK
    listener.events.clear()
    producer.call_ok("PUSH", queue=second, data={})
    producer.call_ok("PUSH", queue=queue, data={})
    listener.barrier()
    assert listener.events == []
    assert without_req_id(listener.call("UnsubscribeEvents")) == OK  # twice is fine


# ----- a connection that closes ---------------------------------------------------------


def test_jobs_of_a_closed_connection(
    target: Server, connect: Callable[[], Conn], queue: str
) -> None:
    """Pulled without owner, or with an owner and a lock never renewed: back to waiting
    when the connection closes. With an owner and the lock renewed (JobHeartbeat or
    JobHeartbeatB with the token): still active, left to lock expiry."""
    pusher, worker = connect(), connect()
    ids = push_many(pusher, queue, 5)
    plain = worker.call_ok("PULL", queue=queue)["job"]["id"]
    unrenewed, unrenewed_token = pull_locked(worker, queue)
    renewed, renewed_token = pull_locked(worker, queue)
    batch = worker.call_ok("PULLB", queue=queue, count=2, owner="tester")
    batch_ids = [j["id"] for j in batch["jobs"]]
    assert [plain, unrenewed["id"], renewed["id"], *batch_ids] == ids
    worker.call_ok("JobHeartbeat", id=renewed["id"], token=renewed_token)
    worker.call_ok("JobHeartbeatB", ids=batch_ids[:1], tokens=batch["tokens"][:1])
    for job_id in ids:
        assert state_of(target, job_id) == "active"
    worker.close()

    for job_id in (plain, unrenewed["id"], batch_ids[1]):
        wait_state(target, job_id, "waiting")
        assert get_job(target.client, job_id)["attempts"] == 0
    for job_id in (renewed["id"], batch_ids[0]):
        assert state_of(target, job_id) == "active"
    # The released job's lock token is dead; the renewed leases still hold, from any
    # connection (acking them also spares the server a drain at shutdown).
    expect_error(
        pusher.call("ACK", id=unrenewed["id"], token=unrenewed_token),
        f"Job not found or not in processing state: {unrenewed['id']}",
        NOT_FOUND,
    )
    reply = pusher.call(
        "ACKB", ids=[renewed["id"], batch_ids[0]], tokens=[renewed_token, batch["tokens"][0]]
    )
    assert without_req_id(reply) == OK


# ----- rate limit --------------------------------------------------------------------------


def test_rate_limit_counts_frames_per_connection(start_target: ServerFactory) -> None:
    """RATE_LIMIT_MAX_REQUESTS frames per window per connection (every frame counts, a
    malformed one too); the next is refused with the string reqId, the connection stays,
    and another connection has its own budget. (The window's expiry is the engine's
    `RateWindow`, unit-tested with explicit times.)"""
    srv = start_target(RATE_LIMIT_MAX_REQUESTS="3", RATE_LIMIT_WINDOW_MS="600000")
    with Conn(srv.tcp_port) as first, Conn(srv.tcp_port) as second:
        first.call_ok("Ping")
        first.send_raw(raw_frame(b"\xc1"))
        assert first.reply()["error"] == "Invalid command format"
        first.call_ok("Ping")
        refused = first.call("Ping")
        assert without_req_id(refused) == {"ok": False, "error": "Rate limit exceeded"}
        assert isinstance(refused["reqId"], str)
        second.call_ok("Ping")

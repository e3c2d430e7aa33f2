"""WebSocket: /ws and /ws/queues/:queue with the asyncio client of the `websockets`
package. Commands (PUSH, PUSHB, PULL, ACK, FAIL, Auth) with reqId echoed, error replies,
event broadcasts with the queue filter, release of a closed connection's jobs, and auth
at the handshake. Each scenario runs under a time limit, every receive has its own."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import websockets
from support import INTERFACE, Server, get_job, pull, push, run_server, wait_until
from websockets.asyncio.client import ClientConnection, connect

RECV_TIMEOUT_S = 5.0
SCENARIO_TIMEOUT_S = 20.0
TOKEN = "ws-secret"
# bunqueue's wording for an ack or fail of a job that is not active.
NOT_ACTIVE = "Job not found or not in processing state: "


def run(scenario: Callable[[], Awaitable[None]]) -> None:
    async def bounded() -> None:
        await asyncio.wait_for(scenario(), SCENARIO_TIMEOUT_S)

    asyncio.run(bounded())


class Peer:
    """One WebSocket client: replies are matched by reqId, events are kept aside."""

    def __init__(self, conn: ClientConnection) -> None:
        self.conn = conn
        self.events: list[dict[str, Any]] = []
        self.replies: list[dict[str, Any]] = []
        self._next = 0

    async def recv(self) -> dict[str, Any]:
        raw = await asyncio.wait_for(self.conn.recv(), RECV_TIMEOUT_S)
        msg = json.loads(raw)
        assert isinstance(msg, dict), msg
        (self.events if "eventType" in msg else self.replies).append(msg)
        return msg  # type: ignore[no-any-return]

    async def send_raw(self, text: str) -> None:
        await self.conn.send(text)

    async def reply(self, req_id: Any = None) -> dict[str, Any]:
        """The next reply with this reqId (or without one when None)."""
        for _ in range(10_000):
            for i, msg in enumerate(self.replies):
                if msg.get("reqId") == req_id:
                    return self.replies.pop(i)
            await self.recv()
        raise AssertionError("reply not found")

    async def call(self, cmd: str, **fields: Any) -> dict[str, Any]:
        self._next += 1
        req_id = fields.pop("reqId", f"r{self._next}")
        await self.conn.send(json.dumps({"cmd": cmd, **fields, "reqId": req_id}))
        msg = await self.reply(req_id)
        assert msg["reqId"] == req_id
        return msg

    async def event(self, event_type: str, job_id: str) -> dict[str, Any]:
        for _ in range(10_000):
            for msg in self.events:
                if msg["eventType"] == event_type and msg.get("jobId") == job_id:
                    return msg
            await self.recv()
        raise AssertionError("event not found")


def ws_connect(server: Server, path: str = "/ws", **kw: Any) -> connect:
    return connect(server.ws_url + path, open_timeout=5, close_timeout=2, **kw)


# ----- commands ------------------------------------------------------------------------------


@pytest.mark.smoke
def test_push_pull_ack(server: Server, queue: str) -> None:
    async def scenario() -> None:
        async with ws_connect(server) as conn:
            peer = Peer(conn)
            pushed = await peer.call("PUSH", queue=queue, data={"to": "user@test.com"})
            assert set(pushed) == {"ok", "id", "reqId"}
            assert pushed["ok"] is True and isinstance(pushed["id"], str)
            job_id = pushed["id"]

            # With a lock owner the reply carries the lock token (bunqueue's PULL).
            pulled = await peer.call("PULL", queue=queue, owner="w1", reqId="req-2")
            assert pulled["ok"] is True and pulled["reqId"] == "req-2"
            assert pulled["job"]["id"] == job_id
            assert pulled["job"]["data"] == {"to": "user@test.com"}
            assert isinstance(pulled["token"], str)

            empty = await peer.call("PULL", queue=queue)
            assert empty == {"ok": True, "job": None, "reqId": empty["reqId"]}

            acked = await peer.call(
                "ACK", id=job_id, result={"sent": True}, token=pulled["token"], reqId=3
            )
            assert acked == {"ok": True, "reqId": 3}

        job = get_job(server.client, job_id)
        assert job["state"] == "completed"
        assert job["result"] == {"sent": True}

    run(scenario)


def test_push_options_and_fail(server: Server, queue: str) -> None:
    async def scenario() -> None:
        async with ws_connect(server) as conn:
            peer = Peer(conn)
            job_id = (
                await peer.call("PUSH", queue=queue, data=1, priority=4, maxAttempts=1, tags=["t"])
            )["id"]
            job = get_job(server.client, job_id)
            assert (job["priority"], job["maxAttempts"], job["tags"]) == (4, 1, ["t"])
            pulled = await peer.call("PULL", queue=queue, owner="w1")
            failed = await peer.call("FAIL", id=job_id, error="Timeout", token=pulled["token"])
            assert failed == {"ok": True, "reqId": failed["reqId"]}
        job = get_job(server.client, job_id)
        assert job["state"] == "failed"
        assert job["error"] == "Timeout"

    run(scenario)


@pytest.mark.smoke
def test_pushb_many_jobs(server: Server, queue: str) -> None:
    async def scenario() -> None:
        async with ws_connect(server) as conn:
            peer = Peer(conn)
            jobs = [{"data": {"i": i}} for i in range(1000)]
            reply = await peer.call("PUSHB", queue=queue, jobs=jobs, reqId="bulk")
            assert set(reply) == {"ok", "ids", "reqId"}
            ids = reply["ids"]
            assert len(ids) == 1000 and len(set(ids)) == 1000
            for i in (0, 499, 999):
                assert get_job(server.client, ids[i])["data"] == {"i": i}
            first = await peer.call("PULL", queue=queue)
            assert first["job"]["id"] == ids[0]

    run(scenario)


def test_req_id_is_echoed_as_sent(server: Server, queue: str) -> None:
    async def scenario() -> None:
        async with ws_connect(server) as conn:
            peer = Peer(conn)
            for req_id in ("abc", 7, 1.5, {"n": 1}, ["x"], True):
                reply = await peer.call("PULL", queue=queue, reqId=req_id)
                assert reply["reqId"] == req_id
            await peer.send_raw(json.dumps({"cmd": "PULL", "queue": queue}))
            reply = await peer.reply(None)
            assert "reqId" not in reply
            assert reply == {"ok": True, "job": None}

    run(scenario)


def test_error_replies(server: Server, queue: str) -> None:
    async def scenario() -> None:
        async with ws_connect(server) as conn:
            peer = Peer(conn)
            assert await peer.call("Bogus", reqId="r8") == {
                "ok": False,
                "error": "Unknown command: Bogus",
                "reqId": "r8",
            }
            assert await peer.call("push", queue=queue, data=1, reqId="lower") == {
                "ok": False,
                "error": "Unknown command: push",
                "reqId": "lower",
            }
            await peer.send_raw("not json")
            assert await peer.reply(None) == {"ok": False, "error": "Invalid JSON"}
            await peer.send_raw("")
            assert await peer.reply(None) == {"ok": False, "error": "Invalid JSON"}
            await peer.send_raw('{"nocmd":1}')
            missing = await peer.reply(None)
            assert missing["ok"] is False and missing["error"].startswith("Invalid command")
            await peer.send_raw("[1,2]")
            assert (await peer.reply(None))["ok"] is False

            for cmd, fields in (
                ("PUSH", {"queue": queue, "data": 1, "priority": "high"}),
                ("PUSH", {"queue": "bad name", "data": 1}),
                ("PUSH", {"data": 1}),
                ("PUSHB", {"queue": queue, "jobs": "x"}),
                ("PULL", {"queue": queue, "timeout": -1}),
                ("PULL", {"queue": queue, "timeout": "5"}),
                ("PULL", {}),
                ("ACK", {}),
                ("FAIL", {"id": 5}),
            ):
                reply = await peer.call(cmd, **fields)
                assert reply["ok"] is False, (cmd, fields, reply)
                assert isinstance(reply["error"], str) and reply["error"], reply

            for cmd in ("ACK", "FAIL"):
                reply = await peer.call(cmd, id="no-such-job", reqId=cmd)
                assert reply == {"ok": False, "error": NOT_ACTIVE + "no-such-job", "reqId": cmd}

            # Nothing was pushed by the bad commands, and the socket still works.
            assert (await peer.call("PULL", queue=queue))["job"] is None
            assert (await peer.call("PUSH", queue=queue, data=1))["ok"] is True

    run(scenario)


def test_a_message_without_cmd(server: Server, queue: str) -> None:
    """`Invalid command`, with a string `reqId` echoed as the documentation's error shape
    has it (bunqueue 2.9.5 echoes none over /ws); a reqId of another type is not echoed,
    as on the TCP port."""

    async def scenario() -> None:
        async with ws_connect(server, f"/ws/queues/{queue}") as conn:
            peer = Peer(conn)
            await peer.send_raw(json.dumps({"queue": queue, "reqId": "nc"}))
            assert await peer.reply("nc") == {
                "ok": False,
                "error": "Invalid command",
                "reqId": "nc",
            }
            await peer.send_raw(json.dumps({"queue": queue, "reqId": 5}))
            assert await peer.reply(None) == {"ok": False, "error": "Invalid command"}
            await peer.send_raw(json.dumps({"queue": queue}))
            assert await peer.reply(None) == {"ok": False, "error": "Invalid command"}
            # A cmd that is not a string (bunqueue: `Unknown command: <its JS string>`).
            for cmd in (7, True, ["PUSH"], ""):
                await peer.send_raw(json.dumps({"cmd": cmd, "reqId": "bad"}))
                reply = await peer.reply("bad")
                assert reply == {"ok": False, "error": "Invalid command", "reqId": "bad"}, cmd

    run(scenario)


def test_a_command_is_answered_before_its_events(server: Server, queue: str) -> None:
    """A command answered at once has its reply on the socket before the events it causes
    (bunqueue 2.9.5 sends the event first); the events carry the documented fields, plus
    `data` on `pushed` and `result` on `completed`."""

    async def scenario() -> None:
        async with ws_connect(server, f"/ws/queues/{queue}") as conn:
            peer = Peer(conn)
            seen: list[dict[str, Any]] = []

            async def until(done: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
                for _ in range(100):
                    msg = await peer.recv()
                    seen.append(msg)
                    if done(msg):
                        return msg
                raise AssertionError(f"not seen: {seen}")

            def is_event(kind: str) -> Callable[[dict[str, Any]], bool]:
                return lambda m: m.get("eventType") == kind

            def is_reply(req_id: str) -> Callable[[dict[str, Any]], bool]:
                return lambda m: m.get("reqId") == req_id

            await conn.send(json.dumps({"cmd": "PUSH", "queue": queue, "data": [1], "reqId": "p"}))
            job_id = (await until(is_reply("p")))["id"]
            pushed = await until(is_event("pushed"))
            await conn.send(json.dumps({"cmd": "PULL", "queue": queue, "reqId": "l"}))
            await until(is_reply("l"))
            pulled = await until(is_event("pulled"))
            await conn.send(json.dumps({"cmd": "ACK", "id": job_id, "result": 7, "reqId": "a"}))
            await until(is_reply("a"))
            completed = await until(is_event("completed"))
            common = {"queue": queue, "jobId": job_id}
            assert pushed == {**common, "eventType": "pushed", "data": [1], "timestamp": ANY_INT}
            assert pulled == {**common, "eventType": "pulled", "timestamp": ANY_INT}
            assert completed == {
                **common,
                "eventType": "completed",
                "result": 7,
                "timestamp": ANY_INT,
            }
            # Each reply came before any event of its command (until() stops at the first).
            kinds = [m.get("eventType") or m["reqId"] for m in seen]
            assert kinds.index("p") < kinds.index("pushed") < kinds.index("l")
            assert kinds.index("l") < kinds.index("pulled") < kinds.index("a")
            assert kinds.index("a") < kinds.index("completed")

    run(scenario)


class _AnyInt:
    def __eq__(self, other: object) -> bool:
        return isinstance(other, int) and not isinstance(other, bool)

    def __hash__(self) -> int:
        return 0


ANY_INT = _AnyInt()


def test_long_poll_pull_does_not_block_other_commands(server: Server, queue: str) -> None:
    async def scenario() -> None:
        async with ws_connect(server) as conn:
            peer = Peer(conn)
            await peer.send_raw(
                json.dumps({"cmd": "PULL", "queue": queue, "timeout": 10000, "reqId": "lp"})
            )
            other = await peer.call("PULL", queue=queue + "-x", reqId="quick")
            assert other["job"] is None
            job_id = await asyncio.to_thread(push, server.client, queue, data="late")
            woken = await peer.reply("lp")
            assert woken["job"]["id"] == job_id
            timed_out = await peer.call("PULL", queue=queue, timeout=300)
            assert timed_out["job"] is None

    run(scenario)


def test_pending_long_polls_per_socket_are_capped(server: Server, queue: str) -> None:
    """Each waiting PULL costs a task: a socket may hold at most 1000; more are refused
    with an error reply instead of growing server memory."""

    async def scenario() -> None:
        async with ws_connect(server) as conn:
            peer = Peer(conn)
            for i in range(1000):
                await peer.send_raw(
                    json.dumps({"cmd": "PULL", "queue": queue, "timeout": 20000, "reqId": f"p{i}"})
                )
            refused = await peer.call("PULL", queue=queue, timeout=20000)
            assert refused["ok"] is False
            assert "Too many pending pulls" in refused["error"]

    run(scenario)


# ----- events --------------------------------------------------------------------------------


@pytest.mark.smoke
def test_events_are_broadcast(server: Server, queue: str) -> None:
    async def scenario() -> None:
        async with ws_connect(server) as conn:
            peer = Peer(conn)
            await peer.call("PULL", queue=queue)  # the socket is subscribed once it answers
            job_id = await asyncio.to_thread(push, server.client, queue, data={"a": 1})
            event = await peer.event("pushed", job_id)
            assert event["queue"] == queue
            assert event["data"] == {"a": 1}
            assert isinstance(event["timestamp"], int)
            await asyncio.to_thread(pull, server.client, queue)
            await peer.event("pulled", job_id)
            await asyncio.to_thread(server.client.post, f"/jobs/{job_id}/ack")
            completed = await peer.event("completed", job_id)
            assert set(completed) >= {"eventType", "queue", "jobId", "timestamp"}

    run(scenario)


def test_events_are_filtered_by_queue(server: Server, queue: str) -> None:
    other = queue + "-other"

    async def scenario() -> None:
        async with ws_connect(server, f"/ws/queues/{queue}") as conn:
            peer = Peer(conn)
            await peer.call("PULL", queue=queue)
            foreign = await asyncio.to_thread(push, server.client, other)
            own = await asyncio.to_thread(push, server.client, queue)
            await peer.event("pushed", own)
            assert all(e["queue"] == queue for e in peer.events), peer.events
            assert foreign not in {e["jobId"] for e in peer.events}
            # Commands on a filtered socket still act on any queue.
            pushed = await peer.call("PUSH", queue=other, data=1)
            assert pushed["ok"] is True

    run(scenario)


def test_two_sockets_both_receive_events(server: Server, queue: str) -> None:
    async def scenario() -> None:
        async with ws_connect(server) as a, ws_connect(server, f"/ws/queues/{queue}") as b:
            pa, pb = Peer(a), Peer(b)
            await pa.call("PULL", queue=queue)
            await pb.call("PULL", queue=queue)
            job_id = (await pa.call("PUSH", queue=queue, data=1))["id"]
            await pa.event("pushed", job_id)
            await pb.event("pushed", job_id)

    run(scenario)


# ----- connection cleanup --------------------------------------------------------------------


def test_closed_connection_releases_its_jobs(server: Server, queue: str) -> None:
    client = server.client
    mine = [push(client, queue, data=i) for i in range(3)]
    http_job = push(client, queue + "-http")
    pull(client, queue + "-http")

    async def scenario() -> None:
        async with ws_connect(server) as conn:
            peer = Peer(conn)
            pulled = [await peer.call("PULL", queue=queue, owner="w") for _ in range(3)]
            assert [p["job"]["id"] for p in pulled] == mine
            # One is finished before the socket closes: it must stay completed.
            await peer.call("ACK", id=mine[0], token=pulled[0]["token"])
            assert get_job(client, mine[1])["state"] == "active"

    run(scenario)

    def released() -> bool:
        return all(get_job(client, j)["state"] == "waiting" for j in mine[1:])

    assert wait_until(released), [get_job(client, j)["state"] for j in mine]
    assert get_job(client, mine[0])["state"] == "completed"
    assert get_job(client, http_job)["state"] == "active"  # not owned by the socket
    again = [pull(client, queue)[0]["id"] for _ in range(2)]
    assert sorted(again) == sorted(mine[1:])


def test_abrupt_disconnect_releases_jobs(server: Server, queue: str) -> None:
    client = server.client
    job_id = push(client, queue)

    async def scenario() -> None:
        conn = await ws_connect(server)
        peer = Peer(conn)
        assert (await peer.call("PULL", queue=queue))["job"]["id"] == job_id
        conn.transport.abort()  # no close handshake

    run(scenario)
    assert wait_until(lambda: get_job(client, job_id)["state"] == "waiting")


# ----- auth ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def auth_server(server_workdir: Path) -> Iterator[Server]:
    with run_server(server_workdir, AUTH_TOKENS=TOKEN) as s:
        yield s


@pytest.mark.parametrize("path", ["/ws", "/ws/queues/emails"])
@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}],
    ids=["none", "wrong", "no-bearer"],
)
def test_handshake_without_a_valid_token_is_rejected(
    auth_server: Server, path: str, headers: dict[str, str]
) -> None:
    async def scenario() -> None:
        with pytest.raises(websockets.InvalidStatus) as err:
            async with ws_connect(auth_server, path, additional_headers=headers):
                pass
        # Observed: HTTP 401 with the JSON error body, as the page says. Granian's RSGI
        # refuses a handshake with a status only (docs/compatibility.md).
        response = err.value.response
        assert response.status_code == 401
        if INTERFACE == "asgi":
            assert json.loads(bytes(response.body)) == {"ok": False, "error": "Unauthorized"}
        else:
            assert not response.body

    run(scenario)


def test_handshake_with_the_token(auth_server: Server, queue: str) -> None:
    headers = {"Authorization": f"Bearer {TOKEN}"}

    async def scenario() -> None:
        async with ws_connect(auth_server, f"/ws/queues/{queue}", additional_headers=headers) as c:
            peer = Peer(c)
            job_id = (await peer.call("PUSH", queue=queue, data=1))["id"]
            await peer.event("pushed", job_id)
            assert await peer.call("Auth", token="wrong", reqId="a1") == {
                "ok": False,
                "error": "Invalid token",
                "reqId": "a1",
            }
            assert await peer.call("Auth", token=TOKEN, reqId="a2") == {"ok": True, "reqId": "a2"}
            assert (await peer.call("Auth", reqId="a3"))["ok"] is False

    run(scenario)


@pytest.mark.smoke
def test_pipelined_commands_are_answered_and_evented_in_order(server: Server, queue: str) -> None:
    """One socket, 2,000 PUSHes sent without waiting: the replies come back in the order
    sent, and so do the jobs' events (the server writes a socket's messages in order,
    however many it hands over at once)."""
    n = 2000

    async def scenario() -> None:
        async with ws_connect(server, f"/ws/queues/{queue}", max_size=None) as conn:
            peer = Peer(conn)
            for i in range(n):
                await peer.send_raw(
                    json.dumps({"cmd": "PUSH", "queue": queue, "data": {"n": i}, "reqId": i})
                )
            while len(peer.replies) < n or len(peer.events) < n:
                await peer.recv()
            assert [r["reqId"] for r in peer.replies] == list(range(n))
            assert all(r["ok"] for r in peer.replies)
            assert [e["data"]["n"] for e in peer.events] == list(range(n))
            ids = [r["id"] for r in peer.replies]
            assert [e["jobId"] for e in peer.events] == ids

    run(scenario)


def test_the_command_table_beyond_the_hot_path(server: Server, queue: str) -> None:
    """The WebSocket runs the TCP protocol's command table (test_tcp_commands.py checks
    each command): a sample of queue and job control, a WaitJob answered when another
    socket completes the job, and a server command."""

    async def scenario() -> None:
        async with ws_connect(server) as a, ws_connect(server) as b:
            waiter, worker = Peer(a), Peer(b)
            ids = (await worker.call("PUSHB", queue=queue, jobs=[{"data": i} for i in range(3)]))[
                "ids"
            ]
            assert (await worker.call("Count", queue=queue))["count"] == 3
            listed = await worker.call("GetJobs", queue=queue, state="waiting", limit=2)
            assert [j["id"] for j in listed["jobs"]] == ids[:2]
            assert (await worker.call("ChangePriority", id=ids[2], priority=5))["ok"] is True
            await a.send(
                json.dumps({"cmd": "WaitJob", "id": ids[2], "timeout": 10_000, "reqId": "w"})
            )
            assert (await waiter.call("Ping"))["ok"] is True  # the WaitJob was read first
            pulled = await worker.call("PULL", queue=queue, owner="w1")
            assert pulled["job"]["id"] == ids[2]
            await worker.call("ACK", id=ids[2], token=pulled["token"], result={"r": 1})
            waited = await waiter.reply("w")
            assert waited == {"ok": True, "completed": True, "result": {"r": 1}, "reqId": "w"}
            stats = await worker.call("Stats")
            assert stats["stats"]["completed"] >= 1
            cleaned = await worker.call("Clean", queue=queue, grace=0)
            assert cleaned["count"] == 2

    run(scenario)

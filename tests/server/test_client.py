"""hopper.Client, hopper.AsyncClient, the WebSocket channel and the producer against the
real job server: every call, the typed errors with the server's messages, SSE, WS
pipelining with out-of-order replies, and reconnection after the server drops the socket.
Each async scenario runs under a time limit."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import hopper
import pytest
import support
from hopper.client import errors as E
from support import INTERFACE, Server, ServerFactory, run_server

SCENARIO_TIMEOUT_S = 20.0


def run(scenario: Callable[[], Awaitable[None]]) -> None:
    async def bounded() -> None:
        await asyncio.wait_for(scenario(), SCENARIO_TIMEOUT_S)

    asyncio.run(bounded())


@pytest.fixture
def client(server: Server) -> Any:
    with hopper.Client(server.url, timeout=5) as c:
        yield c


# ----- HTTP, sync --------------------------------------------------------------------


def test_push_maps_every_option(client: hopper.Client, queue: str) -> None:
    parent = client.push(queue, {"p": 1})
    job_id = client.push(
        queue,
        {"to": "user@test.com"},
        name="welcome",
        priority=7,
        delay=60_000,
        max_attempts=5,
        backoff=2000,
        ttl=86_400_000,
        timeout=30_000,
        unique_key=f"u-{queue}",
        job_id=f"custom-{queue}",
        tags=("email", "onboarding"),
        group_id="batch-1",
        lifo=True,
        remove_on_complete=False,
        remove_on_fail=False,
        durable=True,
        depends_on=[parent],
    )
    assert job_id == f"custom-{queue}"
    job = client.get(job_id)
    assert job["data"] == {"to": "user@test.com"}
    expected = {
        "name": "welcome",
        "priority": 7,
        "maxAttempts": 5,
        "backoff": 2000,
        "ttl": 86_400_000,
        "timeout": 30_000,
        "uniqueKey": f"u-{queue}",
        "tags": ["email", "onboarding"],
        "groupId": "batch-1",
        "lifo": True,
        "durable": True,
        "dependsOn": [parent],
    }
    assert {k: job[k] for k in expected} == expected
    assert job["state"] == "waiting-children"

    repeating = client.push(queue, 1, repeat={"every": 60_000, "limit": 2})
    assert client.get(repeating)["repeat"]["every"] == 60_000
    # unique_key dedup and idempotent job_id return the existing id
    assert client.push(queue, 2, unique_key=f"u-{queue}") == job_id
    with pytest.raises(TypeError, match="unexpected keyword argument 'maxAttempts'"):
        client.push(queue, 1, maxAttempts=3)  # type: ignore[call-arg]


def test_push_many_pull_ack_fail_get_cancel(client: hopper.Client, queue: str) -> None:
    ids = client.push_many(
        queue, [{"data": {"i": i}, "max_attempts": 2, "backoff": 0} for i in range(5)]
    )
    assert len(set(ids)) == 5
    assert [client.get(i)["data"] for i in ids] == [{"i": i} for i in range(5)]
    assert client.get(ids[0])["maxAttempts"] == 2

    job = client.pull(queue)
    assert isinstance(job, hopper.Job)
    assert (job.id, job.queue, job.data, job.attempts, job.max_attempts) == (
        ids[0],
        queue,
        {"i": 0},
        0,
        2,
    )
    client.ack(job.id, job.token, {"sent": True})
    done = client.get(job.id)
    assert (done["state"], done["result"]) == ("completed", {"sent": True})

    job = client.pull(queue, timeout=1)
    assert job is not None
    client.fail(job.id, job.token, "SMTP refused")
    again = client.get(job.id)
    assert again["state"] in ("waiting", "delayed") and again["attempts"] == 1
    assert again["error"] == "SMTP refused"

    client.cancel(ids[4])
    with pytest.raises(hopper.NotFoundError):
        client.get(ids[4])
    health = client.health()
    assert health["ok"] is True


def test_long_poll_pull(client: hopper.Client, queue: str) -> None:
    t0 = time.monotonic()
    assert client.pull(queue, timeout=0.3) is None
    assert 0.25 <= time.monotonic() - t0 < 3

    pushed: list[str] = []
    timer = threading.Timer(0.2, lambda: pushed.append(client.push(queue, "late")))
    timer.start()
    try:
        job = client.pull(queue, timeout=5)
    finally:
        timer.join()
    assert job is not None and job.id == pushed[0]
    with pytest.raises(hopper.InvalidInputError, match="between 0 and 60"):
        client.pull(queue, timeout=61)


def test_errors_carry_the_server_message(client: hopper.Client, queue: str) -> None:
    with pytest.raises(hopper.InvalidInputError) as bad:
        client.push(queue, 1, priority="high")  # type: ignore[arg-type]
    assert isinstance(bad.value, E.BadRequestError) and bad.value.status == 400
    assert "priority" in str(bad.value) and bad.value.message == str(bad.value)

    with pytest.raises(hopper.InvalidInputError, match="Invalid queue name"):
        client.push("bad name", 1)
    with pytest.raises(hopper.InvalidInputError, match="dependsOn"):
        client.push(queue, 1, depends_on=["no-such-job"])
    with pytest.raises(hopper.InvalidInputError, match="not JSON-serializable"):
        client.push(queue, {1, 2})

    with pytest.raises(hopper.NotFoundError) as missing:
        client.get("no-such-job")
    assert isinstance(missing.value, E.JobNotFoundError)
    assert (missing.value.status, str(missing.value)) == (404, "Job not found")
    with pytest.raises(hopper.NotFoundError, match="Job not found"):
        client.cancel("no-such-job")

    job_id = client.push(queue, 1)
    with pytest.raises(hopper.InvalidStateError, match="Job not found or not active"):
        client.ack(job_id)  # not pulled
    job = client.pull(queue)
    assert job is not None
    with pytest.raises(hopper.LockError, match="Invalid lock token"):
        client.ack(job.id, "not-the-token")
    with pytest.raises(hopper.InvalidInputError, match="cannot be cancelled: it is active"):
        client.cancel(job.id)
    client.ack(job.id, job.token)


def test_auth_errors(start_server: ServerFactory, queue: str) -> None:
    srv = start_server(AUTH_TOKENS="good-token,other")
    with hopper.Client(srv.url, token="wrong", timeout=5) as wrong:
        with pytest.raises(E.AuthError) as denied:
            wrong.push(queue, 1)
        assert (denied.value.status, str(denied.value)) == (401, "Unauthorized")
        assert wrong.health()["ok"] is True  # health needs no token
    with hopper.Client(srv.url, timeout=5) as anonymous, pytest.raises(E.AuthError):
        anonymous.pull(queue)
    with hopper.Client(srv.url, token="good-token", timeout=5) as good:
        job_id = good.push(queue, 1)
        assert good.get(job_id)["state"] == "waiting"
        with good.events(queue) as events:
            good.push(queue, 2)
            assert next(iter(events))["eventType"] == "pushed"

    async def ws() -> None:
        async with hopper.AsyncClient(srv.url, token="bad", timeout=5) as bad:
            # RSGI refuses a handshake without a body: the client then names the status.
            expected = "Unauthorized" if INTERFACE == "asgi" else "upgrade refused with HTTP 401"
            with pytest.raises(E.AuthError, match=expected) as refused:
                await bad.channel().push(queue, 1)
            assert refused.value.status == 401
            with pytest.raises(E.AuthError):
                async with bad.events() as stream:
                    await stream.open()
        async with hopper.AsyncClient(srv.url, token="other", timeout=5) as ok:
            channel = ok.channel()
            assert await channel.push(queue, 3)  # handshake header, then the Auth command
            with pytest.raises(E.AuthError, match="Invalid token"):
                await channel.auth("wrong")
            await channel.close()

    run(ws)


def test_limits_and_transport_errors(start_server: ServerFactory, queue: str) -> None:
    srv = start_server(HOPPER_MAX_BODY_BYTES="2000", RATE_LIMIT_MAX_REQUESTS="4")
    with hopper.Client(srv.url, timeout=5) as c:
        with pytest.raises(hopper.InvalidInputError) as big:
            c.push(queue, "x" * 5000)
        assert isinstance(big.value, E.PayloadTooLargeError) and big.value.status == 413
        assert "Request body too large" in str(big.value)
        with pytest.raises(hopper.UnavailableError) as limited:
            for _ in range(10):
                c.pull(queue)
        assert isinstance(limited.value, E.RateLimitedError)
        assert str(limited.value) == "Rate limit exceeded"

    port = support.free_port()
    with (
        hopper.Client(f"http://127.0.0.1:{port}", timeout=2) as nowhere,
        pytest.raises(E.ConnectionLostError),
    ):
        nowhere.push(queue, 1)
    # A listener that never answers: the request times out.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(4)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        with hopper.Client(url, timeout=0.3) as slow, pytest.raises(E.RequestTimeoutError):
            slow.get("x")


def test_sse_iteration(client: hopper.Client, queue: str) -> None:
    with client.events(queue) as events:
        job_id = client.push(queue, {"n": 1})
        job = client.pull(queue)
        assert job is not None
        client.ack(job.id, job.token, "done")
        seen = []
        for event in events:
            assert event["queue"] == queue
            assert event["jobId"] in (job_id, None)  # None: queue events ("drained")
            seen.append(event["eventType"])
            if event["eventType"] == "completed":
                break
    assert [e for e in seen if e != "drained"] == ["pushed", "pulled", "completed"]


def test_sse_parser_handles_named_events_and_overflow() -> None:
    from hopper.client.sse import SseParser

    p = SseParser()
    lines = ["event: job:pushed", 'data: {"jobId":"1",', 'data: "queue":"q"}', ""]
    assert [p.feed(line) for line in lines][-1] == {
        "jobId": "1",
        "queue": "q",
        "eventType": "job:pushed",
    }
    assert p.feed(": keepalive") is None and p.feed("") is None
    assert p.feed('data: {"connected":true,"clientId":"c"}') is None and p.feed("") is None
    p.feed('data: {"ok":false,"error":"Event buffer overflow"}')
    with pytest.raises(E.ConnectionLostError, match="overflow"):
        p.feed("")


# ----- HTTP, async -------------------------------------------------------------------


def test_async_client_every_call(server: Server, queue: str) -> None:
    async def scenario() -> None:
        async with hopper.AsyncClient(server.url, timeout=5) as c:
            ids = await c.push_many(queue, [{"data": i, "priority": i} for i in range(3)])
            one = await c.push(queue, {"x": 1}, max_attempts=1)
            assert (await c.get(one))["maxAttempts"] == 1
            async with c.events(queue) as events:
                job = await c.pull(queue, timeout=1)
                assert job is not None and job.id == ids[2]  # highest priority first
                await c.ack(job.id, job.token, [1, 2])
                got = [e["eventType"] async for e in _take(events, "completed")]
            assert [e for e in got if e != "drained"] == ["pulled", "completed"]
            job = await c.pull(queue)
            assert job is not None
            await c.fail(job.id, job.token, "boom")
            assert (await c.get(job.id))["error"] == "boom"
            await c.cancel(ids[0])
            with pytest.raises(hopper.NotFoundError):
                await c.get(ids[0])
            with pytest.raises(hopper.InvalidInputError, match="Invalid queue name"):
                await c.pull("bad name")
            assert await c.pull(queue, timeout=0.1) is not None  # the `one` job
            assert await c.pull(queue, timeout=0.1) is None

    run(scenario)


async def _take(events: Any, last: str) -> Any:
    async for event in events:
        yield event
        if event["eventType"] == last:
            return


# ----- WebSocket channel -------------------------------------------------------------


def test_ws_channel_commands(server: Server, queue: str) -> None:
    async def scenario() -> None:
        async with hopper.AsyncClient(server.url, timeout=5) as c:
            channel = c.channel()
            job_id = await channel.push(queue, {"a": 1}, priority=2, max_attempts=4, tags=["t"])
            job = await c.get(job_id)
            assert (job["priority"], job["maxAttempts"], job["tags"]) == (2, 4, ["t"])
            ids = await channel.push_many(queue, [{"data": i, "max_attempts": 1} for i in range(3)])
            assert channel.pushb is True and len(ids) == 3
            pulled = await channel.pull(queue, timeout=1)
            assert pulled is not None and pulled.id == job_id and pulled.token
            await channel.ack(pulled.id, pulled.token, {"ok": 1})
            assert (await c.get(job_id))["result"] == {"ok": 1}
            pulled = await channel.pull(queue)
            assert pulled is not None
            await channel.fail(pulled.id, pulled.token, "nope")
            assert (await c.get(pulled.id))["state"] == "failed"
            with pytest.raises(hopper.InvalidStateError, match=r"not (active|in processing state)"):
                await channel.ack(pulled.id)
            with pytest.raises(hopper.InvalidInputError, match="Invalid queue name"):
                await channel.push("bad name", 1)
            with pytest.raises(hopper.InvalidInputError, match="Unknown command"):
                await channel.call("BOGUS")
            # without PUSHB (as on a server lacking the extension): pipelined PUSHes
            channel.pushb = False
            more = await channel.push_many(queue, [{"data": {"i": i}} for i in range(50)])
            assert [(await c.get(i))["data"]["i"] for i in more[:3]] == [0, 1, 2]
            await channel.close()
            with pytest.raises(E.ConnectionLostError, match="closed"):
                await channel.push(queue, 1)

    run(scenario)


def test_ws_pipelining_replies_out_of_order(server: Server, queue: str) -> None:
    other = queue + "-other"

    async def scenario() -> None:
        async with hopper.AsyncClient(server.url, timeout=5) as c:
            channel = c.channel()
            await channel.connect()
            order: list[str] = []

            async def tagged(name: str, coro: Awaitable[Any]) -> Any:
                result = await coro
                order.append(name)
                return result

            # A long poll first: its reply comes after the commands sent behind it.
            pull = asyncio.ensure_future(tagged("pull", channel.pull(queue, timeout=5)))
            await asyncio.sleep(0.05)
            pushes = [
                asyncio.ensure_future(tagged(f"push{i}", channel.push(other, {"i": i})))
                for i in range(200)
            ]
            ids = await asyncio.gather(*pushes)
            assert not pull.done()
            assert len(set(ids)) == 200
            for i in (0, 99, 199):  # each reply resolved its own command
                assert (await c.get(ids[i]))["data"] == {"i": i}
            target = await channel.push(queue, "for the pull")
            job = await pull
            assert job is not None and job.id == target
            assert order[-1] == "pull" and len(order) == 201
            assert channel.connects == 1
            await channel.close()

    run(scenario)


def test_ws_reconnects_after_the_server_drops_the_socket(
    server_workdir: Path, queue: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The server restarts on the same port: the command in flight fails with
    ConnectionLostError, the next command connects again."""
    port = support.free_port()
    monkeypatch.setattr(support, "free_port", lambda: port)

    async def start() -> Any:
        cm = run_server(server_workdir)
        await asyncio.to_thread(cm.__enter__)
        return cm

    async def stop(cm: Any) -> None:  # SIGTERM: the server closes its sockets (1001)
        await asyncio.to_thread(cm.__exit__, None, None, None)

    async def scenario() -> None:
        async with hopper.AsyncClient(f"http://127.0.0.1:{port}", timeout=5) as c:
            channel = c.channel()
            first_server = await start()
            try:
                first = await channel.push(queue, 1, durable=True)
                waiting = asyncio.ensure_future(channel.pull(queue + "-empty", timeout=30))
                await asyncio.sleep(0.1)
                assert not waiting.done()
            finally:
                await stop(first_server)
            with pytest.raises(E.ConnectionLostError) as lost:
                await waiting
            assert isinstance(lost.value, hopper.UnavailableError)
            assert "closed" in str(lost.value)
            assert not channel.connected
            with pytest.raises(E.ConnectionLostError, match="cannot connect"):
                await channel.push(queue, 2)  # nothing listens now
            second_server = await start()
            try:
                second = await channel.push(queue, 3)
                assert channel.connects == 2 and second != first
                job = await channel.pull(queue, timeout=1)
                assert job is not None and job.id == first  # durable across the restart
                await channel.ack(job.id, job.token)
                await channel.close()
            finally:
                await stop(second_server)

    run(scenario)


# ----- producer ----------------------------------------------------------------------


def test_producer_batches_and_pipelines(server: Server, queue: str) -> None:
    async def scenario() -> None:
        async with (
            hopper.AsyncClient(server.url, timeout=5) as c,
            c.producer(queue, batch_size=100, max_in_flight=4) as producer,
        ):
            futures = [await producer.push({"i": i}, priority=1) for i in range(1050)]
            ids = await asyncio.gather(*futures)
            assert len(set(ids)) == 1050
            many = await producer.push_many([{"data": {"j": j}} for j in range(777)])
            assert len(set(many)) == 777
            assert producer.pushed == 1050 + 777
            assert (await c.get(ids[1049]))["data"] == {"i": 1049}
            assert (await c.get(many[776]))["data"] == {"j": 776}
            first = await c.pull(queue)
            assert first is not None and first.id == ids[0]  # priority 1 first, in order

            # A bad job fails its batch (all or none); flush() raises it once.
            bad = await producer.push({"x": 1}, queue="bad name")
            with pytest.raises(hopper.InvalidInputError, match="Invalid queue name"):
                await producer.flush()
            with pytest.raises(hopper.InvalidInputError):
                bad.result()
            await producer.flush()  # the error was reported; the producer goes on
            assert await (await producer.push(2))

    run(scenario)

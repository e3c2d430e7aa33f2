"""bunqueue's webhooks (AddWebhook, RemoveWebhook, ListWebhooks, SetWebhookEnabled) on the
TCP protocol, against the real server process, with a receiver on loopback.

The reply shapes and errors run on both targets (HOPPER_TCP_TEST_TARGET=bunqueue checks
them on the reference, with public URLs that never get an event). The reference refuses
loopback URLs, so delivery runs on hopper only, started with
HOPPER_WEBHOOK_ALLOW_PRIVATE_URLS=1."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import hopper
import pytest
from support import HOST, Server, ServerFactory, wait_until
from tcp_client import ON_BUNQUEUE, UNDEFINED, Conn
from test_tcp_protocol import expect_error, pull_locked
from webhook_receiver import Receiver

hopper_only = pytest.mark.skipif(ON_BUNQUEUE, reason="the reference refuses loopback URLs")
VALID = "job.pushed, job.started, job.completed, job.failed, job.progress"
PUBLIC_URL = "https://example.com/hopper-test-hook"


@pytest.fixture
def loopback_server(start_server: ServerFactory) -> Server:
    if ON_BUNQUEUE:
        pytest.skip("the reference refuses loopback URLs")
    return start_server(HOPPER_WEBHOOK_ALLOW_PRIVATE_URLS="1", HOPPER_WEBHOOK_RETRY_DELAY_MS="50")


@pytest.fixture
def lconn(loopback_server: Server) -> Iterator[Conn]:
    with Conn(loopback_server.tcp_port) as c:
        yield c


def add(c: Conn, url: str, events: list[str], **fields: Any) -> str:
    reply = c.call_ok("AddWebhook", url=url, events=events, **fields)
    webhook_id: str = reply["data"]["webhookId"]
    return webhook_id


def listed(c: Conn, webhook_id: str) -> dict[str, Any]:
    hooks = c.call_ok("ListWebhooks")["data"]["webhooks"]
    found: dict[str, Any] = next(h for h in hooks if h["id"] == webhook_id)
    return found


# ----- reply shapes and errors (both targets) -------------------------------------------


def test_add_list_enable_remove_replies(conn: Conn, queue: str) -> None:
    added = conn.call_ok(
        "AddWebhook", url=PUBLIC_URL, events=["job.completed"], queue=queue, secret="s3"
    )
    data = added["data"]
    assert set(data) == {"webhookId", "url", "events", "queue", "createdAt"}
    assert data["url"] == PUBLIC_URL and data["events"] == ["job.completed"]
    assert data["queue"] == queue and isinstance(data["createdAt"], float | int)
    wid = data["webhookId"]
    try:
        listing = conn.call_ok("ListWebhooks")["data"]
        assert {"total", "enabled"} <= set(listing["stats"])
        hook = next(h for h in listing["webhooks"] if h["id"] == wid)
        assert hook == {
            "id": wid,
            "url": PUBLIC_URL,
            "events": ["job.completed"],
            "queue": queue,
            "createdAt": data["createdAt"],
            "lastTriggered": None,
            "successCount": 0,
            "failureCount": 0,
            "enabled": True,
        }
        before = listing["stats"]["enabled"]
        reply = conn.call_ok("SetWebhookEnabled", id=wid, enabled=False)
        assert reply.get("id", UNDEFINED) is UNDEFINED
        after = conn.call_ok("ListWebhooks")["data"]
        assert after["stats"]["enabled"] == before - 1
        assert next(h for h in after["webhooks"] if h["id"] == wid)["enabled"] is False
        conn.call_ok("SetWebhookEnabled", id=wid, enabled=True)
        assert listed(conn, wid)["enabled"] is True
        # No queue: null.
        other = conn.call_ok("AddWebhook", url=PUBLIC_URL, events=[])["data"]
        assert other["queue"] is None and other["events"] == []
        conn.call_ok("RemoveWebhook", webhookId=other["webhookId"])
    finally:
        assert conn.call_ok("RemoveWebhook", webhookId=wid)["data"] == {"removed": True}
    assert all(h["id"] != wid for h in conn.call_ok("ListWebhooks")["data"]["webhooks"])
    expect_error(conn.call("RemoveWebhook", webhookId=wid), "Webhook not found")
    expect_error(conn.call("SetWebhookEnabled", id=wid, enabled=True), "Webhook not found")


@pytest.mark.parametrize(
    ("url", "message"),
    [
        (None, "Webhook URL is required"),
        ("", "Webhook URL is required"),
        ("nope", "Invalid URL format"),
        (5, "Invalid URL format"),
        ("ftp://example.com/h", "Webhook URL must use http or https protocol"),
        ("https://example.com/" + "a" * 2048, "Webhook URL too long (max 2048 characters)"),
        ("http://127.0.0.1:9/h", "Webhook URL cannot point to localhost"),
        ("http://localhost/h", "Webhook URL cannot point to localhost"),
        ("http://[::1]/h", "Webhook URL cannot point to localhost"),
        ("http://127.1.2.3/h", "Webhook URL cannot point to loopback IP"),
        ("http://10.1.2.3/h", "Webhook URL cannot point to private IP"),
        ("http://172.20.0.1/h", "Webhook URL cannot point to private IP"),
        ("http://192.168.1.1/h", "Webhook URL cannot point to private IP"),
        ("http://169.254.169.254/h", "Webhook URL cannot point to link-local IP"),
        ("http://0.0.0.0/h", "Webhook URL cannot point to unspecified IP"),
        ("http://[::ffff:10.0.0.1]/h", "Webhook URL cannot point to private IP"),
        ("http://[fd00::1]/h", "Webhook URL cannot point to private (ULA) IP"),
        ("http://[fe80::1]/h", "Webhook URL cannot point to link-local IP"),
        (
            "http://metadata.google.internal/h",
            "Webhook URL cannot point to cloud metadata endpoints",
        ),
    ],
)
def test_bad_urls_are_refused(conn: Conn, url: object, message: str) -> None:
    fields: dict[str, Any] = {"events": ["job.pushed"]}
    if url is not None:
        fields["url"] = url
    before = conn.call_ok("ListWebhooks")["data"]["stats"]["total"]
    expect_error(conn.call("AddWebhook", **fields), message)
    assert conn.call_ok("ListWebhooks")["data"]["stats"]["total"] == before


def test_unknown_events_are_refused(conn: Conn) -> None:
    reply = conn.call("AddWebhook", url=PUBLIC_URL, events=["job.pushed", "bogus", "x"])
    expect_error(reply, f"Invalid webhook event(s): bogus, x. Valid: {VALID}")
    # Not a list: bunqueue answers with a JavaScript TypeError's text.
    error = expect_error(conn.call("AddWebhook", url=PUBLIC_URL, events="job.pushed"))
    assert "events" in error
    error = expect_error(conn.call("AddWebhook", url=PUBLIC_URL))
    assert "events" in error


# ----- delivery (hopper, loopback allowed) ---------------------------------------------


@hopper_only
def test_events_bodies_and_signature(lconn: Conn, receiver: Receiver, queue: str) -> None:
    secret = "top-secret"
    wid = add(lconn, receiver.url, list(VALID.split(", ")), queue=queue, secret=secret)
    a = lconn.call_ok("PUSH", queue=queue, data={"n": 1})["id"]
    job, token = pull_locked(lconn, queue)
    assert job["id"] == a
    lconn.call_ok("Progress", id=a, progress=40)
    lconn.call_ok("ACK", id=a, token=token, result={"done": True})
    b = lconn.call_ok("PUSH", queue=queue, data={"n": 2})["id"]
    job, token = pull_locked(lconn, queue)
    lconn.call_ok("FAIL", id=b, token=token, error="boom")

    want = [
        ("job.pushed", a),
        ("job.started", a),
        ("job.progress", a),
        ("job.completed", a),
        ("job.pushed", b),
        ("job.started", b),
        ("job.failed", b),
    ]
    assert wait_until(lambda: len(receiver.requests) >= len(want)), receiver.bodies()
    assert sorted(receiver.events()) == sorted(want)
    for headers, body in receiver.requests:
        assert headers["content-type"] == "application/json"
        expected = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
        assert headers["x-webhook-signature"] == expected
        payload = json.loads(body)
        assert headers["x-webhook-event"] == payload["event"]
        assert headers["x-webhook-timestamp"] == str(payload["timestamp"])
        assert payload["queue"] == queue
    by_event = {b["event"] + b["jobId"]: b for b in receiver.bodies()}
    assert set(by_event["job.pushed" + a]) == {"event", "timestamp", "jobId", "queue"}
    assert by_event["job.completed" + a]["data"] == {"done": True}
    assert by_event["job.progress" + a]["progress"] == 40
    failed = by_event["job.failed" + b]
    assert failed["error"] == "boom" and failed["data"] == {"n": 2}
    hook = wait_until(lambda: (h := listed(lconn, wid))["successCount"] == len(want) and h)
    assert hook["failureCount"] == 0 and isinstance(hook["lastTriggered"], float | int)


@hopper_only
def test_queue_filter_event_filter_disable_and_remove(
    lconn: Conn, receiver: Receiver, queue: str
) -> None:
    other = f"{queue}-other"
    only_q = add(lconn, receiver.url, ["job.pushed"], queue=queue)
    everywhere = add(lconn, receiver.url, ["job.completed"])
    # No secret: no signature.
    x = lconn.call_ok("PUSH", queue=queue, data={})["id"]
    y = lconn.call_ok("PUSH", queue=other, data={})["id"]
    job, token = pull_locked(lconn, other)
    lconn.call_ok("ACK", id=job["id"], token=token)
    assert wait_until(lambda: len(receiver.requests) >= 2)
    assert sorted(receiver.events()) == sorted([("job.pushed", x), ("job.completed", y)])
    assert all("x-webhook-signature" not in h for h, _ in receiver.requests)

    # Disabled: nothing more; enabled again: delivered again. The hub handles events in
    # order, so once a later job's completion has arrived, z's push was seen disabled.
    lconn.call_ok("SetWebhookEnabled", id=only_q, enabled=False)
    z = lconn.call_ok("PUSH", queue=queue, data={})["id"]
    marker = lconn.call_ok("PUSH", queue=other, data={})["id"]
    job, token = pull_locked(lconn, other)
    lconn.call_ok("ACK", id=marker, token=token)
    assert wait_until(lambda: ("job.completed", marker) in receiver.events())
    lconn.call_ok("SetWebhookEnabled", id=only_q, enabled=True)
    w = lconn.call_ok("PUSH", queue=queue, data={})["id"]
    assert wait_until(lambda: ("job.pushed", w) in receiver.events())
    assert ("job.pushed", z) not in receiver.events()

    lconn.call_ok("RemoveWebhook", webhookId=only_q)
    lconn.call_ok("RemoveWebhook", webhookId=everywhere)
    assert lconn.call_ok("ListWebhooks")["data"]["stats"]["total"] == 0
    seen = len(receiver.requests)
    # No webhook left: the sink is detached, nothing can be sent.
    lconn.call_ok("PUSH", queue=queue, data={})
    pull_locked(lconn, queue)
    assert len(receiver.requests) == seen


@hopper_only
def test_retries_until_the_receiver_succeeds(lconn: Conn, queue: str) -> None:
    receiver = Receiver(statuses=(500, 500, 200))
    try:
        wid = add(lconn, receiver.url, ["job.pushed"], queue=queue)
        a = lconn.call_ok("PUSH", queue=queue, data={})["id"]
        hook = wait_until(lambda: (h := listed(lconn, wid))["successCount"] == 1 and h)
        assert hook and hook["failureCount"] == 0
        assert receiver.events() == [("job.pushed", a)] * 3
        assert len({body for _, body in receiver.requests}) == 1  # the same delivery
    finally:
        receiver.close()


@hopper_only
def test_a_receiver_failing_every_attempt_counts_one_failure(lconn: Conn, queue: str) -> None:
    receiver = Receiver(statuses=(503,))
    try:
        wid = add(lconn, receiver.url, ["job.pushed"], queue=queue)
        lconn.call_ok("PUSH", queue=queue, data={})
        hook = wait_until(lambda: (h := listed(lconn, wid))["failureCount"] == 1 and h)
        assert hook and hook["successCount"] == 0 and hook["lastTriggered"] is None
        assert len(receiver.requests) == 3  # WEBHOOK_MAX_RETRIES' default: 3 attempts
    finally:
        receiver.close()


@hopper_only
def test_a_receiver_that_never_answers_does_not_hold_pushes(
    start_server: ServerFactory, queue: str
) -> None:
    silent = socket.socket()  # accepts connections (the backlog) and never answers
    silent.bind((HOST, 0))
    silent.listen(1024)
    try:
        server = start_server(
            HOPPER_WEBHOOK_ALLOW_PRIVATE_URLS="1",
            HOPPER_WEBHOOK_QUEUE_SIZE="8",
            HOPPER_WEBHOOK_TIMEOUT_MS="60000",
        )
        with Conn(server.tcp_port) as c:
            url = f"http://{HOST}:{silent.getsockname()[1]}/hook"
            add(c, url, ["job.pushed"], queue=queue)
            for i in range(10):
                jobs = [{"name": "j", "data": {"i": i, "k": k}} for k in range(100)]
                assert len(c.call_ok("PUSHB", queue=queue, jobs=jobs)["ids"]) == 100
            c.call_ok("PUSH", queue=queue, data={})

            # 1001 events; at most 4 being sent and 8 queued: the rest are dropped (once
            # the hub has seen them all: events reach it after the replies).
            def dropped() -> int:
                return int(c.call_ok("ListWebhooks")["data"]["stats"]["dropped"])

            assert wait_until(lambda: dropped() >= 1001 - 4 - 8), dropped()
            assert c.call_ok("Count", queue=queue)["count"] == 1001
    finally:
        silent.close()


@hopper_only
def test_webhooks_survive_a_restart(start_server: ServerFactory, tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    env = {"HOPPER_WEBHOOK_ALLOW_PRIVATE_URLS": "1", "HOPPER_DATA_DIR": str(data_dir)}
    receiver = Receiver()
    queue = f"q-{uuid.uuid4().hex[:8]}"
    try:
        first = start_server(**env)
        with Conn(first.tcp_port) as c:
            kept = add(c, receiver.url, ["job.pushed"], queue=queue, secret="k")
            off = add(c, "https://example.com/x", ["job.failed"])
            c.call_ok("SetWebhookEnabled", id=off, enabled=False)
            gone = add(c, "https://example.com/y", ["job.failed"])
            c.call_ok("RemoveWebhook", webhookId=gone)
            before = c.call_ok("ListWebhooks")["data"]["webhooks"]
        first.process.stop(10)
        stored = json.loads((data_dir / "webhooks.json").read_text())
        assert {h["id"] for h in stored["webhooks"]} == {kept, off}

        second = start_server(**env)
        with Conn(second.tcp_port) as c:
            after = c.call_ok("ListWebhooks")["data"]
            assert after["webhooks"] == before
            assert after["stats"]["total"] == 2 and after["stats"]["enabled"] == 1
            a = c.call_ok("PUSH", queue=queue, data={})["id"]
            assert wait_until(lambda: receiver.events() == [("job.pushed", a)])
            headers, body = receiver.requests[0]
            assert headers["x-webhook-signature"] == hmac.new(b"k", body, "sha256").hexdigest()
    finally:
        receiver.close()


@hopper_only
def test_loopback_is_refused_by_default(conn: Conn) -> None:
    expect_error(
        conn.call("AddWebhook", url="http://127.0.0.1:1/h", events=["job.pushed"]),
        "Webhook URL cannot point to localhost",
    )


@hopper_only
def test_set_enabled_needs_a_boolean(conn: Conn) -> None:
    wid = add(conn, PUBLIC_URL, [], queue="never-used")
    try:
        expect_error(conn.call("SetWebhookEnabled", id=wid), "enabled must be a boolean")
        expect_error(conn.call("AddWebhook", url=PUBLIC_URL, events=[], queue=5))
        assert listed(conn, wid)["enabled"] is True
    finally:
        conn.call_ok("RemoveWebhook", webhookId=wid)


@hopper_only
def test_changes_over_ws_are_answered_once_written(
    loopback_server: Server, receiver: Receiver, queue: str
) -> None:
    """Over `/ws` too (the changes answer from a task, after the registry's write), with
    commands pipelined behind them answered alike."""

    async def scenario() -> None:
        async with hopper.AsyncClient(loopback_server.url, timeout=5) as client:
            channel = client.channel()
            added = await channel.call("AddWebhook", url=receiver.url, events=["job.pushed"])
            wid = added["data"]["webhookId"]
            _, listing = await asyncio.gather(
                channel.call("SetWebhookEnabled", id=wid, enabled=False),
                channel.call("ListWebhooks"),
            )
            assert wid in [h["id"] for h in listing["data"]["webhooks"]]
            # Answered, so written and made.
            listing = await channel.call("ListWebhooks")
            assert [h["enabled"] for h in listing["data"]["webhooks"]] == [False]
            removed = await channel.call("RemoveWebhook", webhookId=wid)
            assert removed["data"] == {"removed": True}
            with pytest.raises(hopper.HopperError, match="Webhook not found"):
                await channel.call("RemoveWebhook", webhookId=wid)
            await channel.close()

    asyncio.run(asyncio.wait_for(scenario(), 20))

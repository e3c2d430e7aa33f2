"""WebSocket back-pressure, against the real server (see `hopper.server.events`): a socket
that stops reading is dropped with its reason and its jobs go back to waiting; sockets
that read are never dropped, however hard producers push: the producers are slowed."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from typing import Any

import websockets
from support import INTERFACE, ServerFactory, get_job, wait_until
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

TOO_SLOW = "event buffer overflow: client too slow"
BIG = "x" * (256 * 1024)


def small_buffer_socket(port: int) -> socket.socket:
    """A client socket with a small receive buffer, so that a client that stops reading
    is noticed after a few MB instead of the kernel's autotuned buffers."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 * 1024)
    sock.connect(("127.0.0.1", port))
    return sock


def test_a_socket_that_stops_reading_is_dropped_with_its_reason(
    start_server: ServerFactory, queue: str
) -> None:
    srv = start_server()
    port = int(srv.url.rsplit(":", 1)[1])
    uri = f"{srv.ws_url}/ws/queues/{queue}"
    # max_queue=1: the client library stops reading the socket once one message waits.
    with connect(uri, sock=small_buffer_socket(port), max_queue=1, max_size=None) as ws:
        srv.client.post(f"/queues/{queue}/jobs", json={"data": 1}).raise_for_status()
        ws.send(json.dumps({"cmd": "PULL", "queue": queue, "reqId": "p"}))
        messages = [json.loads(ws.recv(timeout=5)), json.loads(ws.recv(timeout=5))]
        leased = next(m for m in messages if m.get("reqId") == "p")["job"]["id"]
        assert get_job(srv.client, leased)["state"] == "active"
        # Stop reading; push ~80 MB of events for this socket (bounded in count).
        for _ in range(40):
            resp = srv.client.post(
                f"/queues/{queue}/jobs/bulk", json=[{"data": BIG}] * 8, timeout=30
            )
            resp.raise_for_status()
            if srv.client.get("/health").json()["connections"]["ws"] == 0:
                break
        wait_until(lambda: srv.client.get("/health").json()["connections"]["ws"] == 0, 10)
        # Its lease went back to waiting at the drop, not when the TCP connection ends.
        assert get_job(srv.client, leased)["state"] == "waiting"
        # Reading again: what was in flight, then the reason, then the close.
        last = None
        try:
            while True:
                last = ws.recv(timeout=10)
        except ConnectionClosed as closed:
            if INTERFACE == "asgi":
                assert closed.rcvd is not None
                assert (closed.rcvd.code, closed.rcvd.reason) == (1008, TOO_SLOW)
        assert last is not None and json.loads(last) == {"ok": False, "error": TOO_SLOW}


def test_sockets_that_read_are_not_dropped_under_a_flood(
    start_server: ServerFactory, queue: str
) -> None:
    """Two sockets read every event while four others push 120,000 jobs of ~1 KB as fast
    as they can (PUSHB, 100 per message, 8 in flight each): 2 x 120 MB of events, more
    than the readers take at once. The readers get every event and no socket closes."""
    srv = start_server()
    total, per_message, window, producers = 120_000, 100, 8, 4
    payload = {"blob": "y" * 1000}
    counts = [0, 0]
    closes: list[Any] = []

    def read(i: int) -> None:
        with connect(f"{srv.ws_url}/ws/queues/{queue}", max_size=None) as ws:
            ready.release()
            try:
                while counts[i] < total:
                    if json.loads(ws.recv(timeout=60)).get("eventType") == "pushed":
                        counts[i] += 1
            except ConnectionClosed as e:
                closes.append(e.rcvd)
            except TimeoutError:
                closes.append("timeout")

    async def produce(n_messages: int) -> None:
        async with websockets.connect(f"{srv.ws_url}/ws/queues/{queue}-p", max_size=None) as ws:
            batch = json.dumps(
                {"cmd": "PUSHB", "queue": queue, "jobs": [{"data": payload}] * per_message}
            )
            sent = answered = 0
            while sent < min(window, n_messages):
                await ws.send(batch)
                sent += 1
            while answered < n_messages:
                reply = json.loads(await asyncio.wait_for(ws.recv(), 60))
                if "ok" not in reply:
                    continue  # an event
                assert reply["ok"], reply
                answered += 1
                if sent < n_messages:
                    await ws.send(batch)
                    sent += 1

    ready = threading.Semaphore(0)
    readers = [threading.Thread(target=read, args=(i,)) for i in range(2)]
    for t in readers:
        t.start()
    for _ in readers:
        assert ready.acquire(timeout=10)
    t0 = time.monotonic()

    async def flood() -> None:
        per_producer = total // per_message // producers
        await asyncio.wait_for(
            asyncio.gather(*(produce(per_producer) for _ in range(producers))), 180
        )

    asyncio.run(flood())
    for t in readers:
        t.join(180 - (time.monotonic() - t0))
        assert not t.is_alive()
    assert closes == []
    assert counts == [total, total]
    assert srv.client.get("/health").json()["connections"]["ws"] == 0


def test_an_sse_stream_that_stops_reading_is_ended_with_a_notice_on_asgi(
    start_server: ServerFactory, queue: str
) -> None:
    """On ASGI a stream's writes wait for the client, so a stream that stops reading is
    dropped past the bound, with the notice as its last event. Always run on ASGI: on
    RSGI, Granian queues a stream's chunks without bound and the server cannot see a
    reader stop (docs/compatibility.md)."""
    srv = start_server(HOPPER_INTERFACE="asgi")
    port = int(srv.url.rsplit(":", 1)[1])
    sock = small_buffer_socket(port)
    sock.sendall(f"GET /events/queues/{queue} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    assert sock.recv(4096).startswith(b"HTTP/1.1 200")
    for _ in range(40):  # stop reading; ~80 MB of events for this stream, bounded
        resp = srv.client.post(f"/queues/{queue}/jobs/bulk", json=[{"data": BIG}] * 8, timeout=30)
        resp.raise_for_status()
        if srv.client.get("/health").json()["connections"]["sse"] == 0:
            break
    tail = b""
    sock.settimeout(10)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # read again, to the end of the response
        chunk = sock.recv(1 << 20)
        if not chunk:
            break
        tail = (tail + chunk)[-4096:]
        if tail.endswith(b"0\r\n\r\n"):
            break
    sock.close()
    assert b"Event buffer overflow: client too slow, disconnecting" in tail
    assert tail.endswith(b"0\r\n\r\n"), tail[-200:]  # the chunked response was ended
    wait_until(lambda: srv.client.get("/health").json()["connections"]["sse"] == 0, 10)

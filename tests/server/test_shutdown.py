"""Stopping the server: SIGTERM ends every kind of connection cleanly and exits 0."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import threading
import time
from pathlib import Path

import httpx
import pytest
from support import INTERFACE, run_server
from tcp_client import Conn, without_req_id
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect as ws_connect


def test_sigterm_ends_streams_sockets_and_long_polls_then_exits_0(server_workdir: Path) -> None:
    """Shutdown is graceful: an open SSE stream ends, a WebSocket is closed with 1001, a
    long poll answers "no job", and the process exits 0 well before the 5 s kill timeout
    (leaving `run_server` sends SIGTERM and asserts exit code 0)."""
    outcome: dict[str, object] = {}
    with contextlib.ExitStack() as stack, run_server(server_workdir) as srv:
        ws = stack.enter_context(ws_connect(srv.ws_url + "/ws", open_timeout=5))
        ws.send('{"cmd":"PULL","queue":"q","reqId":1}')
        assert json.loads(ws.recv(timeout=5))["reqId"] == 1

        def long_poll() -> None:
            outcome["poll"] = httpx.get(srv.url + "/queues/lp/jobs?timeout=60000", timeout=30)

        def read_stream() -> None:
            with httpx.stream("GET", srv.url + "/events", timeout=30) as resp:
                outcome["sse_lines"] = sum(1 for _ in resp.iter_lines())

        def read_socket() -> None:
            try:
                ws.recv(timeout=30)
            except ConnectionClosed as e:
                outcome["ws_close"] = e.rcvd.code if e.rcvd else None

        threads = [threading.Thread(target=t) for t in (long_poll, read_stream, read_socket)]
        for t in threads:
            t.start()
        time.sleep(0.5)
        t0 = time.monotonic()
    assert time.monotonic() - t0 < 3, "stopped by the app, not by the kill timeout"
    for t in threads:
        t.join(10)
        assert not t.is_alive()
    poll = outcome["poll"]
    assert isinstance(poll, httpx.Response) and poll.status_code == 200
    assert poll.json() == {"ok": True, "job": None, "token": None}
    # "Going away"; Granian's RSGI closes a socket without a code (docs/compatibility.md).
    assert outcome["ws_close"] == (1001 if INTERFACE == "asgi" else 1005)
    assert isinstance(outcome["sse_lines"], int) and outcome["sse_lines"] >= 1


def test_repeated_sigterm_still_exits_0(server_workdir: Path) -> None:
    """Signals arriving while the first is being handled must not wedge the process."""
    with run_server(server_workdir) as srv:
        for _ in range(6):
            srv.proc.send_signal(signal.SIGTERM)
        assert srv.proc.wait(10) == 0


def test_sigterm_answers_tcp_commands_in_flight_then_closes(server_workdir: Path) -> None:
    """On the bunqueue TCP port a SIGTERM stops the listener, answers a long-polling
    PULL ("no job") and closes the connection after it; the process exits 0 (checked by
    `run_server`) well before the kill timeout."""
    with run_server(server_workdir) as srv:
        conn = Conn(srv.tcp_port, timeout=10)
        conn.call_ok("SubscribeEvents", queue="lp")
        poll = conn.request("PULL", queue="lp", timeout=60_000)
        conn.barrier()  # the PULL is running when the signal comes
        t0 = time.monotonic()
        srv.proc.send_signal(signal.SIGTERM)
        assert without_req_id(conn.reply(poll)) == {"ok": True, "job": None}
        assert conn.wait_closed(5)
        assert srv.proc.wait(10) == 0
    assert time.monotonic() - t0 < 3, "stopped by the app, not by the kill timeout"
    with (
        contextlib.suppress(OSError),
        socket.create_connection(("127.0.0.1", srv.tcp_port), timeout=2),
    ):
        raise AssertionError("the TCP port still accepts connections after the exit")


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "group-sigterm"])
def test_a_signal_to_the_whole_process_group_stops_cleanly_with_0(
    server_workdir: Path, signum: signal.Signals
) -> None:
    """Ctrl-C in a terminal (SIGINT) and `systemctl stop` (SIGTERM to every process of
    the unit) reach the worker as well as the main process: the worker's own exit is
    then part of the shutdown, not an "unexpected exit" ending with status 1; and the
    engine closes cleanly, so a restart finds what was pushed."""
    with run_server(server_workdir) as srv:
        pushed = srv.client.post("/queues/g/jobs", json={"data": 1, "jobId": "kept"})
        assert pushed.status_code == 200, pushed.text
        os.killpg(srv.proc.pid, signum)
        assert srv.proc.wait(10) == 0, srv.process.log_tail()
        assert "Unexpected exit" not in srv.process.log_tail(), srv.process.log_tail()
        srv.process.start(30.0)
        assert srv.client.get("/jobs/kept").json()["job"]["state"] == "waiting"

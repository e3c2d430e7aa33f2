"""In-process cost of one push through hopper's serving path, without Granian or a
network: the app's RSGI or ASGI entry point is called with stand-in protocol objects, so
what is measured is hopper's own Python and engine work per HTTP request or per WebSocket
message. Count instructions with callgrind (deterministic, unlike time on a shared
2-core machine): run twice with N and 2N and divide the difference by N.

    valgrind --tool=callgrind --callgrind-out-file=/dev/null \\
        .venv/bin/python bench/request_cost.py --mode http --interface rsgi -n 20000
    python bench/request_cost.py --callgrind --mode ws       # does both runs, prints /op

`--bare` runs bench/bare_app.py's parse-the-body RSGI app instead (the floor of the
harness itself). The server runs with `--memory`: the log's cost is in docs/durability.md.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
PUSH = (
    b'{"data":{"to":"user@example.com","subject":"Welcome aboard!!!",'
    b'"template":"welcome-v2-2026","n":1}}'
)
WS_PUSH = '{"cmd":"PUSH","queue":"q","data":{"to":"user@example.com","n":1},"reqId":%d}'
CONNS = 64


class RsgiScope:
    proto = "http"
    method = "POST"
    path = "/queues/q/jobs"
    query_string = ""

    def __init__(self) -> None:
        self.headers = {"content-length": str(len(PUSH)), "content-type": "application/json"}


class RsgiHttp:
    def __init__(self) -> None:
        self.status = 0

    async def __call__(self) -> bytes:
        return PUSH

    def response_bytes(self, status: int, headers: Any, body: bytes) -> None:
        self.status = status


class WsMessage:
    kind = 2  # string

    def __init__(self, data: str) -> None:
        self.data = data


class Close:
    kind = 0
    data = b""


class RsgiWsTransport:
    def __init__(self, n: int, done: asyncio.Event) -> None:
        self.n, self.i, self.replies, self.done = n, 0, 0, done

    async def receive(self) -> Any:
        if self.i == self.n:
            await self.done.wait()
            return Close()
        self.i += 1
        if self.i % 64 == 0:
            await asyncio.sleep(0)  # let the writer run, as socket reads would
        return WsMessage(WS_PUSH % self.i)

    async def send_str(self, text: str) -> None:
        if '"reqId"' in text:
            self.replies += 1
            if self.replies == self.n:
                self.done.set()


class RsgiWsProtocol:
    def __init__(self, transport: RsgiWsTransport) -> None:
        self.transport = transport

    async def accept(self) -> RsgiWsTransport:
        return self.transport

    def close(self, status: int | None = None) -> None:
        pass


class WsScope:
    proto = "ws"
    method = "GET"
    path = "/ws/queues/other"  # no events for this socket: replies only
    query_string = ""

    def __init__(self) -> None:
        self.headers: dict[str, str] = {}


async def http_rsgi(entry: Any, n: int) -> None:
    scope = RsgiScope()

    async def conn(k: int) -> None:
        for _ in range(k):
            proto = RsgiHttp()
            await entry(scope, proto)
            assert proto.status == 200, proto.status

    await asyncio.gather(*(conn(n // CONNS) for _ in range(CONNS)))


async def http_asgi(app: Any, n: int) -> None:
    scope = {
        "type": "http",
        "method": "POST",
        "path": "/queues/q/jobs",
        "query_string": b"",
        "headers": [(b"content-length", b"%d" % len(PUSH)), (b"content-type", JSON)],
    }
    message = {"type": "http.request", "body": PUSH, "more_body": False}

    async def receive() -> dict[str, Any]:
        return message

    status = []

    async def send(msg: dict[str, Any]) -> None:
        if msg["type"] == "http.response.start":
            status.append(msg["status"])

    async def conn(k: int) -> None:
        for _ in range(k):
            await app(scope, receive, send)

    await asyncio.gather(*(conn(n // CONNS) for _ in range(CONNS)))
    assert set(status) == {200}, set(status)


JSON = b"application/json"


async def ws_rsgi(entry: Any, n: int) -> None:
    done = asyncio.Event()
    transport = RsgiWsTransport(n, done)
    await entry(WsScope(), RsgiWsProtocol(transport))
    assert transport.replies == n, transport.replies


async def main(args: argparse.Namespace) -> float:
    from hopper.server.app import HopperApp
    from hopper.server.config import ServerConfig

    app = HopperApp(ServerConfig(memory=True, data_dir=tempfile.mkdtemp()))
    loop = asyncio.get_running_loop()
    entry = None
    if hasattr(app, "rsgi"):
        app.rsgi.__rsgi_init__(loop)
        entry = app.rsgi.__rsgi__
    if args.bare:
        sys.path.insert(0, str(HERE))
        import bare_app

        entry = bare_app.rsgi_app_parse.__rsgi__
    run = {
        ("http", "rsgi"): lambda n: http_rsgi(entry, n),
        # (getattr: the app before the pipeline was an ASGI callable itself)
        ("http", "asgi"): lambda n: http_asgi(getattr(app, "asgi", app), n),
        ("ws", "rsgi"): lambda n: ws_rsgi(entry, n),
    }[(args.mode, args.interface)]
    await run(1024)  # warm up
    t0 = time.process_time()
    await run(args.n)
    return (time.process_time() - t0) / args.n


def callgrind(argv: list[str], n: int) -> int:
    out = subprocess.run(
        [
            "valgrind",
            "--tool=callgrind",
            "--callgrind-out-file=/dev/null",
            sys.executable,
            __file__,
            *argv,
            "-n",
            str(n),
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stderr
    return int(re.search(r"Collected : (\d+)", out).group(1))


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--mode", choices=("http", "ws"), default="http")
    p.add_argument("--interface", choices=("rsgi", "asgi"), default="rsgi")
    p.add_argument("--bare", action="store_true", help="bench/bare_app.py's RSGI app instead")
    p.add_argument("-n", type=int, default=200_000, help="requests or messages")
    p.add_argument("--callgrind", action="store_true", help="instructions per op (N and 2N)")
    args = p.parse_args()
    if args.callgrind:
        rest = [a for a in sys.argv[1:] if a != "--callgrind"]
        rest = [a for i, a in enumerate(rest) if a != "-n" and (i == 0 or rest[i - 1] != "-n")]
        n = 20_480
        per_op = (callgrind(rest, 2 * n) - callgrind(rest, n)) / n
        print(
            f"{args.mode} {args.interface}{' bare' if args.bare else ''}: "
            f"{per_op:,.0f} instructions per {'message' if args.mode == 'ws' else 'request'}"
        )
    else:
        import uvloop

        per_op = uvloop.run(main(args))
        print(f"{per_op * 1e6:.2f} us CPU per op (process time, engine threads included)")

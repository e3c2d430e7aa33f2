"""Ceiling reference for bench/server.py: a raw Granian app that answers every HTTP request
with a fixed JSON body, served with the same settings as `hopper serve` (uvloop, one
worker, websockets on, no access log), as an ASGI app (`--interface asgi`, the default)
or an RSGI one (`--interface rsgi`).

With `--parse` it first reads the whole request body and parses it with `orjson.loads`
(an empty body, such as the health check's GET, is not parsed), as a job server must;
without it, it answers without reading the body. On a WebSocket it answers every message
with a fixed reply carrying the message's `reqId`: with `--parse` taken from the parsed
message, without it found by string search (the WebSocket ceiling).

    python bench/bare_app.py --host 127.0.0.1 --port 8000 [--interface rsgi] [--parse]

With `--engine memory|log` every request body is pushed into a hopper
engine instead, as `POST /queues/q/jobs` is, and the answer carries the job's id; with
`log` the engine writes its log under a temporary directory (hopper's default fsync
policy) and the answer waits for the write, as `hopper serve` does. That is the floor of
any job server on this stack: Granian, one engine call, the log, no routing, admission,
metrics or error mapping.

    python bench/bare_app.py [--interface rsgi] --engine log
"""

from __future__ import annotations

import argparse
import os
from typing import Any

import orjson

BODY = b'{"ok":true,"id":"01a2078e-4ce9-7000-b186-b07f6cc824b0"}'
BAD_BODY = b'{"ok":false,"error":"Invalid JSON"}'
START = {
    "type": "http.response.start",
    "status": 200,
    "headers": [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(BODY)).encode()),
    ],
}
RESPONSE = {"type": "http.response.body", "body": BODY}
WS_REPLY = '{"ok":true,"id":"01a2078e-4ce9-7000-b186-b07f6cc824b0","reqId":'
RSGI_HEADERS = [("content-type", "application/json")]


def req_id_by_search(text: str) -> str:
    """The raw `reqId` value of a command, found without parsing (the no-parse ceiling)."""
    i = text.rfind('"reqId":')
    return text[i + 8 : text.index("}", i)] if i >= 0 else "null"


def req_id_parsed(data: str | bytes) -> str:
    """The `reqId` of a command, from the parsed message (the parse ceiling)."""
    try:
        msg = orjson.loads(data)
    except orjson.JSONDecodeError:
        return "null"
    rid = msg.get("reqId") if isinstance(msg, dict) else None
    return orjson.dumps(rid).decode()


# --------------------------------------------------------------------------- ASGI


async def read_body(receive) -> bytes:
    body = b""
    more = True
    while more:
        msg = await receive()
        body += msg.get("body", b"")
        more = msg.get("more_body", False)
    return body


def make_asgi(parse: bool):
    ws_req_id = req_id_parsed if parse else req_id_by_search

    async def app(scope, receive, send):
        kind = scope["type"]
        if kind == "http":
            if parse:
                body = await read_body(receive)
                if body:
                    try:
                        orjson.loads(body)
                    except orjson.JSONDecodeError:
                        await send({**START, "status": 400, "headers": []})
                        await send({"type": "http.response.body", "body": BAD_BODY})
                        return
            await send(START)
            await send(RESPONSE)
            return
        if kind == "websocket":
            await receive()  # websocket.connect
            await send({"type": "websocket.accept"})
            while True:
                msg = await receive()
                if msg["type"] != "websocket.receive":
                    return
                data = msg.get("text")
                if data is None:
                    data = (msg.get("bytes") or b"").decode()
                await send({"type": "websocket.send", "text": WS_REPLY + ws_req_id(data) + "}"})
        if kind == "lifespan":
            while True:
                msg = await receive()
                if msg["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif msg["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return

    return app


app = make_asgi(parse=False)
app_parse = make_asgi(parse=True)


# --------------------------------------------------------------------------- RSGI


class RSGIApp:
    """The same server as an RSGI app (Granian's native interface)."""

    def __init__(self, parse: bool) -> None:
        self.parse = parse
        self.ws_req_id = req_id_parsed if parse else req_id_by_search

    async def __rsgi__(self, scope, protocol):
        if scope.proto == "http":
            if self.parse:
                body = await protocol()
                if body:
                    try:
                        orjson.loads(body)
                    except orjson.JSONDecodeError:
                        protocol.response_bytes(400, RSGI_HEADERS, BAD_BODY)
                        return
            protocol.response_bytes(200, RSGI_HEADERS, BODY)
            return
        if scope.proto == "ws":
            from granian.rsgi import WebsocketMessageType

            transport = await protocol.accept()
            while True:
                msg = await transport.receive()
                if msg.kind == WebsocketMessageType.close:
                    break
                data = msg.data
                if isinstance(data, bytes) and not self.parse:
                    data = data.decode()
                await transport.send_str(WS_REPLY + self.ws_req_id(data) + "}")
            protocol.close(None)


class EnginePush:
    """Pushes a request body into an engine (see the module's docstring) and gives the
    answer's status and body. The engine is made in the worker process, at its first
    request."""

    def __init__(self) -> None:
        self.engine: Any = None
        self.refused: type[Exception] = Exception

    def _open(self) -> Any:
        import asyncio
        import tempfile

        from hopper.errors import HopperError
        from hopper.server.server_engine import ServerEngine

        self.refused = HopperError
        log = os.environ["BARE_ENGINE"] == "log"
        data_dir = tempfile.mkdtemp(prefix="bare-engine-") if log else None
        engine = ServerEngine(data_dir=data_dir)
        engine.serve_on(asyncio.get_running_loop())
        return engine

    async def __call__(self, method: str, body: bytes) -> tuple[int, bytes]:
        engine = self.engine or self._open()
        self.engine = engine
        if method != "POST":
            return 200, BODY
        try:
            job_id = engine.push_body_json("q", body)
        except self.refused:
            return 400, BAD_BODY
        pending = engine.commit_pending()
        if pending is not None:
            await pending
        return 200, b'{"ok":true,"id":' + job_id + b"}"


class RSGIEngineApp:
    def __init__(self) -> None:
        self.push = EnginePush()

    async def __rsgi__(self, scope, protocol):
        status, body = await self.push(scope.method, await protocol())
        protocol.response_bytes(status, RSGI_HEADERS, body)


def make_asgi_engine():
    push = EnginePush()

    async def app(scope, receive, send):
        if scope["type"] == "lifespan":
            await make_asgi(parse=False)(scope, receive, send)
            return
        status, answer = await push(scope["method"], await read_body(receive))
        await send({**START, "status": status, "headers": START["headers"][:1]})
        await send({"type": "http.response.body", "body": answer})

    return app


rsgi_app = RSGIApp(parse=False)
rsgi_app_parse = RSGIApp(parse=True)
rsgi_app_engine = RSGIEngineApp()
app_engine = make_asgi_engine()


def main() -> None:
    from granian import Granian
    from granian.constants import Interfaces, Loops

    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--interface", choices=("asgi", "rsgi"), default="asgi")
    p.add_argument(
        "--parse",
        action="store_true",
        help="read the whole request body / WS message and parse it with orjson.loads",
    )
    p.add_argument(
        "--engine",
        choices=("memory", "log"),
        help="push every body into a hopper engine (`log`: with its log)",
    )
    args = p.parse_args()
    target = ("rsgi_app" if args.interface == "rsgi" else "app") + ("_parse" if args.parse else "")
    if args.engine:
        os.environ["BARE_ENGINE"] = args.engine
        target = "rsgi_app_engine" if args.interface == "rsgi" else "app_engine"
    Granian(
        f"bare_app:{target}",
        address=args.host,
        port=args.port,
        interface=Interfaces.RSGI if args.interface == "rsgi" else Interfaces.ASGI,
        loop=Loops.uvloop,
        workers=1,
        websockets=True,
        log_access=False,
    ).serve()


if __name__ == "__main__":
    main()

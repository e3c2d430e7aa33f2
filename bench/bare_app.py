"""Ceiling reference for bench/server.py: a raw ASGI app that answers every HTTP request
with a fixed JSON body without reading the request body, served by Granian with the same
settings as `hopper serve` (ASGI, uvloop, one worker, websockets on, no access log).
On a WebSocket it answers every text message with a fixed reply carrying the message's
`reqId` (found by string search, no JSON parsing), the WebSocket ceiling.

    python bench/bare_app.py --host 127.0.0.1 --port 8000
"""

from __future__ import annotations

import argparse

BODY = b'{"ok":true,"id":"01a2078e-4ce9-7000-b186-b07f6cc824b0"}'
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


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            msg = await receive()
            if msg["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif msg["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] == "websocket":
        await receive()  # websocket.connect
        await send({"type": "websocket.accept"})
        while True:
            msg = await receive()
            if msg["type"] != "websocket.receive":
                return
            text = msg.get("text") or ""
            i = text.rfind('"reqId":')
            rid = text[i + 8 : text.index("}", i)] if i >= 0 else "null"
            await send({"type": "websocket.send", "text": WS_REPLY + rid + "}"})
    if scope["type"] != "http":
        return
    await send(START)
    await send(RESPONSE)


def main() -> None:
    from granian import Granian
    from granian.constants import Interfaces, Loops

    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    args = p.parse_args()
    Granian(
        "bare_app:app",
        address=args.host,
        port=args.port,
        interface=Interfaces.ASGI,
        loop=Loops.uvloop,
        workers=1,
        websockets=True,
        log_access=False,
    ).serve()


if __name__ == "__main__":
    main()

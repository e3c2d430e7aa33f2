"""A raw client for bunqueue's binary TCP protocol, and the reference server to check it on.

A frame is a 4-byte big-endian body length followed by one MessagePack value (a map for
requests and replies). `Conn` is a blocking socket client that writes frames whole, split
or packed several to a write, or any raw bytes, and reads frames back: replies are matched
by `reqId` (compared with their type, as the server echoes them verbatim), event frames
(`{type:"event"}`) are kept aside in `events`. Every read has a deadline.

`run_bunqueue(workdir, **env)` runs the real bunqueue 2.9.5 server (bench/peers) as a
`support.Server`, for validating the tests on the reference (HOPPER_TCP_TEST_TARGET=bunqueue).
"""

from __future__ import annotations

import contextlib
import os
import socket
import struct
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import msgpack  # type: ignore[import-untyped]
import pytest
from hopper.client.tcp import UNDEFINED, decode_body, decode_ext
from hopper.server_process import ServerProcess, free_port
from support import HOST, Server, serving

T = TypeVar("T")
MAX_FRAME = 64 * 1024 * 1024
READ_TIMEOUT_S = 10.0
REPO = Path(__file__).resolve().parents[2]
# The protocol suites run against hopper, or with HOPPER_TCP_TEST_TARGET=bunqueue against
# the reference server (to check that they describe it).
ON_BUNQUEUE = os.environ.get("HOPPER_TCP_TEST_TARGET", "hopper") == "bunqueue"
BUN = REPO / "bench/peers/node_modules/.bin/bun"
BUNQUEUE_MAIN = REPO / "bench/peers/node_modules/bunqueue/dist/main.js"


UNDEFINED_BYTES = b"\xd4\x00\x00"


def _default(obj: Any) -> Any:
    if obj is UNDEFINED:
        return msgpack.ExtType(0, b"\x00")
    raise TypeError(f"cannot pack {type(obj).__name__}")


def pack(value: Any) -> bytes:
    """The MessagePack body of `value` (UNDEFINED becomes `d4 00 00`)."""
    return msgpack.packb(value, use_bin_type=True, default=_default)  # type: ignore[no-any-return]


def unpack(body: bytes) -> Any:
    return decode_body(body)


def header(length: int) -> bytes:
    return struct.pack(">I", length)


def frame(value: Any) -> bytes:
    """A whole frame: the length prefix and the packed `value`."""
    body = pack(value)
    return header(len(body)) + body


def raw_frame(body: bytes) -> bytes:
    return header(len(body)) + body


class Raw(bytes):
    """A value already encoded as MessagePack, put into `raw_map` as it is."""


def int64(value: int) -> Raw:
    """`value` as MessagePack int64 (`d3`), which no encoder picks for a small number."""
    return Raw(b"\xd3" + struct.pack(">q", value))


def uint64(value: int) -> Raw:
    return Raw(b"\xcf" + struct.pack(">Q", value))


def raw_map(fields: dict[str, Any]) -> bytes:
    """A MessagePack map of `fields`: Raw values as they are, the others packed."""
    assert len(fields) < 16
    items = (pack(k) + (v if isinstance(v, Raw) else pack(v)) for k, v in fields.items())
    return bytes([0x80 | len(fields)]) + b"".join(items)


def without_req_id(reply: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in reply.items() if k != "reqId"}


def same(a: Any, b: Any) -> bool:
    """Equal and of the same type (a reqId 1 is not a reqId True or "1")."""
    return type(a) is type(b) and a == b


INT64_MARKERS = frozenset({0xCF, 0xD3})
_MAP_MARKERS = {0xDE, 0xDF, *range(0x80, 0x90)}
_ARRAY_MARKERS = {0xDC, 0xDD, *range(0x90, 0xA0)}


def leaf_markers(body: bytes) -> dict[tuple[Any, ...], int]:
    """The first byte (the MessagePack type marker) of every scalar in `body`, by its
    path of map keys and array indexes: shows how a value was encoded (`cb` float64,
    `cf`/`d3` 64-bit integers, ...), which decoding hides."""
    unpacker = msgpack.Unpacker(raw=False, ext_hook=decode_ext, strict_map_key=False)
    unpacker.feed(body)
    out: dict[tuple[Any, ...], int] = {}

    def walk(path: tuple[Any, ...]) -> None:
        marker = body[unpacker.tell()]
        if marker in _MAP_MARKERS:
            for _ in range(unpacker.read_map_header()):
                key = unpacker.unpack()
                walk((*path, key))
        elif marker in _ARRAY_MARKERS:
            for i in range(unpacker.read_array_header()):
                walk((*path, i))
        else:
            out[path] = marker
            unpacker.skip()

    walk(())
    return out


@dataclass
class Frame:
    """One frame read from the server: its body bytes and their decoded value."""

    body: bytes
    value: Any

    @property
    def is_event(self) -> bool:
        return isinstance(self.value, dict) and self.value.get("type") == "event"


class ConnectionClosed(Exception):
    """The server closed (or reset) the connection."""


class Conn:
    """One raw TCP connection. `call` sends a command and returns its reply; `send`
    and `send_raw` write without waiting, `reply` then collects a reply by reqId. Every
    frame read is checked to hold no 64-bit integer (`cf`/`d3`): bunqueue sends integers
    beyond 32 bits (timestamps) as float64, and the SDK would get BigInts otherwise."""

    def __init__(
        self,
        port: int,
        *,
        timeout: float = READ_TIMEOUT_S,
        rcvbuf: int | None = None,
        token: str | None = None,
    ) -> None:
        """Connects to HOST:`port`; a small `rcvbuf` (bytes) bounds what the kernel takes
        in for a client that does not read; with a `token`, sends Auth first."""
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf is not None:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(timeout)
        self.sock.connect((HOST, port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.timeout = timeout
        self.buf = bytearray()
        self.events: list[Frame] = []
        """Event frames received so far (`value["event"]` is the event)."""
        self.replies: list[Frame] = []
        """Replies received but not yet claimed, in arrival order."""
        self._next = 0
        if token is not None:
            self.call_ok("Auth", token=token)

    def __enter__(self) -> Conn:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.sock.close()

    # ----- writing --------------------------------------------------------------------

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def send(self, *messages: Any) -> None:
        """Writes one frame per message, all in a single write."""
        self.send_raw(b"".join(frame(m) for m in messages))

    def new_req_id(self) -> str:
        self._next += 1
        return f"r{self._next}"

    def request(self, cmd: str, **fields: Any) -> Any:
        """Sends `cmd` with a fresh string reqId (or the `reqId` given); returns it."""
        req_id = fields.pop("reqId") if "reqId" in fields else self.new_req_id()
        self.send({"cmd": cmd, **fields, "reqId": req_id})
        return req_id

    def call(self, cmd: str, **fields: Any) -> dict[str, Any]:
        return self.reply(self.request(cmd, **fields))

    def call_ok(self, cmd: str, **fields: Any) -> dict[str, Any]:
        reply = self.call(cmd, **fields)
        assert reply["ok"] is True, (cmd, fields, reply)
        return reply

    # ----- reading --------------------------------------------------------------------

    def _fill(self, deadline: float) -> None:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("no frame from the server in time")
        self.sock.settimeout(remaining)
        try:
            chunk = self.sock.recv(1 << 20)
        except TimeoutError as e:
            raise TimeoutError("no frame from the server in time") from e
        except ConnectionError as e:  # reset, aborted
            raise ConnectionClosed(str(e)) from e
        if not chunk:
            raise ConnectionClosed("EOF")
        self.buf += chunk

    def read_frame(self, timeout: float | None = None) -> Frame:
        """The next frame, whatever it is. Raises TimeoutError or ConnectionClosed."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while len(self.buf) < 4:
            self._fill(deadline)
        (length,) = struct.unpack(">I", self.buf[:4])
        assert length <= MAX_FRAME, f"server sent a frame of {length} bytes"
        while len(self.buf) < 4 + length:
            self._fill(deadline)
        body = bytes(self.buf[4 : 4 + length])
        del self.buf[: 4 + length]
        wide = {p: hex(m) for p, m in leaf_markers(body).items() if m in INT64_MARKERS}
        assert not wide, f"the server sent 64-bit integers (a JS client gets BigInts): {wide}"
        return Frame(body, unpack(body))

    def _read_until(self, found: Callable[[], T | None], timeout: float | None) -> T:
        """Reads frames (events into `events`, replies into `replies`) until `found()`
        gives something, by the deadline."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while (hit := found()) is None:
            got = self.read_frame(max(0.0, deadline - time.monotonic()))
            if got.is_event:
                self.events.append(got)
            else:
                assert isinstance(got.value, dict), got.value
                self.replies.append(got)
        return hit

    def reply_frame(self, req_id: Any = UNDEFINED, timeout: float | None = None) -> Frame:
        """The reply frame whose reqId is `req_id` (UNDEFINED: a reply without one)."""

        def matching() -> Frame | None:
            for i, f in enumerate(self.replies):
                if same(f.value.get("reqId", UNDEFINED), req_id):
                    return self.replies.pop(i)
            return None

        return self._read_until(matching, timeout)

    def reply(self, req_id: Any = UNDEFINED, timeout: float | None = None) -> dict[str, Any]:
        return self.reply_frame(req_id, timeout).value  # type: ignore[no-any-return]

    def next_reply(self, timeout: float | None = None) -> dict[str, Any]:
        """The next reply in arrival order, whatever its reqId."""
        first = self._read_until(lambda: self.replies.pop(0) if self.replies else None, timeout)
        return first.value  # type: ignore[no-any-return]

    def event(self, event_type: str, job_id: str, timeout: float | None = None) -> Frame:
        """The event frame of this type for this job (received now or earlier)."""

        def matching() -> Frame | None:
            for f in self.events:
                event = f.value["event"]
                if event.get("eventType") == event_type and event.get("jobId") == job_id:
                    return f
            return None

        return self._read_until(matching, timeout)

    def barrier(self) -> None:
        """A Ping round trip: whatever the server wrote before its reply has arrived."""
        assert self.call("Ping")["ok"] is True

    def wait_closed(self, timeout: float) -> bool:
        """Reads (and drops) until the server closes the connection: True, or False if it
        is still open after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                self._fill(deadline)
            except ConnectionClosed:
                return True
            except TimeoutError:
                return False
            self.buf.clear()


# ----- the reference server -------------------------------------------------------------


@contextlib.contextmanager
def run_bunqueue(workdir: Path, **env: str) -> Iterator[Server]:
    """bunqueue 2.9.5 in memory on free loopback ports, with `env` added (no rate limit
    unless `env` sets one); stopped with SIGTERM."""
    if not BUN.exists() or not BUNQUEUE_MAIN.exists():
        pytest.fail(
            f"bunqueue is not installed: {BUN} or {BUNQUEUE_MAIN} is missing "
            "(npm ci in bench/peers)"
        )
    port, tcp_port = free_port(), free_port()
    base = {k: v for k, v in os.environ.items() if not k.startswith(("HOPPER_", "BQ_"))}
    process = ServerProcess(
        [str(BUN), str(BUNQUEUE_MAIN)],
        port=port,
        log=workdir / f"bunqueue-{port}.log",
        env={
            **base,
            "HOST": HOST,
            "TCP_PORT": str(tcp_port),
            "HTTP_PORT": str(port),
            "RATE_LIMIT_MAX_REQUESTS": "2000000000",
            **env,
        },
        label="bunqueue",
    )
    process.tcp_port = tcp_port
    with serving(process, lambda p: p.stop(10.0)) as server:
        yield server

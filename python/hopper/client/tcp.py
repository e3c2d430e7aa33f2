"""A small blocking client for bunqueue's binary TCP protocol (what `hopper push` and the
other client commands speak, so they work against hopper and bunqueue alike).

A frame is a 4-byte big-endian body length and one MessagePack map. Requests carry a
string `reqId` and replies are matched on it; event frames (`{type:"event"}`) that a
subscription may interleave are skipped. Two msgpackr habits are mirrored: JavaScript's
`undefined` travels as fixext1 type 0 (`d4 00 00`, decoded here to `UNDEFINED`, which
keeps a key present but valueless, as in JavaScript), and integers beyond 32 bits are
sent as float64, because msgpackr turns 64-bit integers into BigInts that the server
rejects as "not a number".
"""

from __future__ import annotations

import socket
import struct
import time
from collections.abc import Mapping
from typing import Any

import msgpack  # type: ignore[import-untyped]

MAX_FRAME = 64 * 1024 * 1024
"""The largest frame bunqueue accepts or sends (64 MiB)."""
CONNECT_TIMEOUT_S = 5.0
COMMAND_TIMEOUT_S = 30.0
_INT32_MIN = -(2**31)
_UINT32_MAX = 2**32 - 1


class Undefined:
    """JavaScript's `undefined`: a key that is present without a value (falsy)."""

    _instance: Undefined | None = None

    def __new__(cls) -> Undefined:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "UNDEFINED"

    def __bool__(self) -> bool:
        return False


UNDEFINED = Undefined()


class TcpError(Exception):
    """Any failure of the TCP client; `str()` is a message fit for a user."""


class TcpConnectError(TcpError):
    """The server could not be reached, or closed the connection before replying."""


class TcpTimeoutError(TcpError):
    """No reply within the command's timeout."""


class TcpProtocolError(TcpError):
    """The server sent something that is not a frame of this protocol."""


class TcpCommandError(TcpError):
    """The server answered `ok:false`; `reply` is its whole answer."""

    def __init__(self, message: str, reply: Mapping[str, Any]) -> None:
        super().__init__(message)
        self.reply = dict(reply)


class TcpAuthError(TcpCommandError):
    """`Auth` was refused (wrong token)."""


def _wire_value(value: Any) -> Any:
    """`value` with every integer outside msgpackr's 32-bit forms made a float64, and
    UNDEFINED left for the encoder's `default`."""
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        return value if _INT32_MIN <= value <= _UINT32_MAX else float(value)
    if isinstance(value, Mapping):
        return {k: _wire_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_wire_value(v) for v in value]
    return value


def _encode_default(obj: Any) -> Any:
    if obj is UNDEFINED:
        return msgpack.ExtType(0, b"\x00")
    raise TypeError(f"cannot send a {type(obj).__name__} over the TCP protocol")


def decode_ext(code: int, data: bytes) -> Any:
    if code == 0:
        return UNDEFINED
    if code == -1:
        return msgpack.Timestamp.from_bytes(data)
    return msgpack.ExtType(code, data)


def encode_frame(message: Mapping[str, Any]) -> bytes:
    """One whole frame: the length prefix and `message` packed as msgpackr would."""
    body: bytes = msgpack.packb(_wire_value(message), use_bin_type=True, default=_encode_default)
    return struct.pack(">I", len(body)) + body


def decode_body(body: bytes) -> Any:
    return msgpack.unpackb(body, raw=False, ext_hook=decode_ext, strict_map_key=False)


class TcpClient:
    """One connection to a bunqueue-protocol server, used one command at a time.

    `request` returns the server's reply as it is (ok or not); `call` returns it only
    when `ok` is true and raises `TcpCommandError` otherwise; `send` takes the whole
    message and a reply timeout (for long polls). With a `token`, `Auth` is
    the first frame sent (a refusal raises `TcpAuthError`)."""

    def __init__(
        self,
        host: str = "localhost",
        port: int = 6789,
        *,
        token: str | None = None,
        connect_timeout: float = CONNECT_TIMEOUT_S,
    ) -> None:
        self.target = f"{host}:{port}"
        try:
            self._sock = socket.create_connection((host, port), timeout=connect_timeout)
        except TimeoutError as e:
            raise TcpConnectError(f"Connection timeout to {self.target}") from e
        except OSError as e:
            reason = e.strerror or str(e)
            raise TcpConnectError(f"Failed to connect to {self.target}: {reason}") from e
        self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._buf = bytearray()
        self._next_req = 0
        if token:
            reply = self.request("Auth", token=token)
            if reply.get("ok") is not True:
                error = reply.get("error")
                detail = f": {error}" if isinstance(error, str) and error else ""
                self.close()
                raise TcpAuthError(f"Authentication failed{detail}", reply)

    def __enter__(self) -> TcpClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._sock.close()

    def send(
        self, message: Mapping[str, Any], *, timeout: float = COMMAND_TIMEOUT_S
    ) -> dict[str, Any]:
        """Sends `message` (a map with `cmd`) and returns its reply, whatever `ok` says,
        waiting up to `timeout` seconds (a field named `timeout` is the command's own)."""
        self._next_req += 1
        req_id = str(self._next_req)
        frame = encode_frame({**message, "reqId": req_id})
        try:
            self._sock.sendall(frame)
        except OSError as e:
            raise TcpConnectError(f"Connection error: {e.strerror or e}") from e
        deadline = time.monotonic() + timeout
        while True:
            reply = self._read_frame(deadline)
            if not isinstance(reply, dict):
                raise TcpProtocolError("Invalid response from server")
            if reply.get("type") == "event":
                continue
            if reply.get("reqId") == req_id:
                return reply
            # A protocol-level refusal (frame too large, rate limit) names no request.
            unnamed = "reqId" not in reply or reply["reqId"] is UNDEFINED
            if unnamed and reply.get("ok") is False:
                return reply

    def request(self, cmd: str, **fields: Any) -> dict[str, Any]:
        """Sends `{cmd, **fields}` and returns its reply, whatever `ok` says."""
        return self.send({"cmd": cmd, **fields})

    def call(self, cmd: str, **fields: Any) -> dict[str, Any]:
        """Sends a command and returns its `ok:true` reply; raises TcpCommandError."""
        reply = self.request(cmd, **fields)
        if reply.get("ok") is not True:
            error = reply.get("error")
            raise TcpCommandError(error if isinstance(error, str) else "Unknown error", reply)
        return reply

    def _read_frame(self, deadline: float) -> Any:
        while len(self._buf) < 4:
            self._fill(deadline)
        (length,) = struct.unpack(">I", self._buf[:4])
        if length > MAX_FRAME:
            raise TcpProtocolError(f"Frame too large: {length} bytes exceeds maximum {MAX_FRAME}")
        while len(self._buf) < 4 + length:
            self._fill(deadline)
        body = bytes(self._buf[4 : 4 + length])
        del self._buf[: 4 + length]
        try:
            return decode_body(body)
        except (ValueError, msgpack.UnpackException) as e:
            raise TcpProtocolError("Invalid response from server") from e

    def _fill(self, deadline: float) -> None:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TcpTimeoutError("Command timeout")
        self._sock.settimeout(remaining)
        try:
            chunk = self._sock.recv(1 << 16)
        except TimeoutError as e:
            raise TcpTimeoutError("Command timeout") from e
        except OSError as e:
            raise TcpConnectError(f"Connection error: {e.strerror or e}") from e
        if not chunk:
            raise TcpConnectError("Connection closed")
        self._buf += chunk

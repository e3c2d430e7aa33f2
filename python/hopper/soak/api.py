"""The soak suite's view of a server: bunqueue's HTTP API and the WebSocket
command channel, plus hopper's management API (`/api`) for counts and listings.

Thin on purpose: each call returns what the server said. A transport error or a 5xx is
`Unavailable`; any other answer the caller did not expect is `ApiError` with the status
and the server's message. `transport` lets a test put a fake server in between."""

from __future__ import annotations

import contextlib
import itertools
import socket
import time
from typing import Any
from urllib.parse import quote

import httpx
import orjson
from websockets.exceptions import WebSocketException
from websockets.sync.client import ClientConnection, connect

from hopper.job import STATES
from hopper.soak.errors import Unavailable

Pulled = tuple[dict[str, Any], str]
PAGE = 1000
# A WebSocket on a queue filter nobody pushes to receives no event broadcasts.
QUIET_PATH = "/ws/queues/" + quote("__hopper_soak_quiet__", safe="")


class ApiError(Exception):
    def __init__(self, method: str, path: str, status: int, message: str) -> None:
        super().__init__(f"{method} {path} answered {status}: {message}")
        self.status = status
        self.message = message


def _message(resp: httpx.Response) -> str:
    try:
        body = resp.json()
    except ValueError:
        return resp.text[:200]
    if isinstance(body, dict):
        err = body.get("error")
        if isinstance(err, dict):
            return str(err.get("message", err))
        if err is not None:
            return str(err)
    return resp.text[:200]


class HttpApi:
    def __init__(
        self,
        url: str,
        token: str | None = None,
        *,
        api_prefix: str = "/api",
        timeout: float = 10.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        headers = {"authorization": f"Bearer {token}"} if token else {}
        self.url = url.rstrip("/")
        self.token = token
        self.prefix = api_prefix.rstrip("/")
        self.client = httpx.Client(
            base_url=self.url, headers=headers, timeout=timeout, transport=transport
        )

    def close(self) -> None:
        self.client.close()

    # ----- plumbing -------------------------------------------------------------------

    def _call(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: dict[str, Any] | None = None,
        ok: tuple[int, ...] = (200,),
        timeout: float | None = None,
    ) -> tuple[int, Any]:
        extra: dict[str, Any] = {} if timeout is None else {"timeout": timeout}
        try:
            content = None if json is None else orjson.dumps(json)
            resp = self.client.request(
                method,
                path,
                content=content,
                params=params,
                headers={"content-type": "application/json"} if content else None,
                **extra,
            )
        except httpx.HTTPError as e:
            raise Unavailable(f"{method} {path}: {type(e).__name__}: {e}") from e
        if resp.status_code >= 500:
            raise Unavailable(f"{method} {path} answered {resp.status_code}: {_message(resp)}")
        if resp.status_code not in ok:
            raise ApiError(method, path, resp.status_code, _message(resp))
        try:
            return resp.status_code, resp.json()
        except ValueError:
            return resp.status_code, resp.text

    # ----- job server API -------------------------------------------------------------

    def push(self, queue: str, body: dict[str, Any]) -> str:
        _, got = self._call("POST", f"/queues/{quote(queue, safe='')}/jobs", json=body)
        return str(got["id"])

    def push_bulk(self, queue: str, jobs: list[dict[str, Any]]) -> list[str]:
        _, got = self._call("POST", f"/queues/{quote(queue, safe='')}/jobs/bulk", json=jobs)
        return [str(i) for i in got["ids"]]

    def pull(self, queue: str, timeout_ms: int = 0) -> Pulled | None:
        params = {"timeout": timeout_ms} if timeout_ms else None
        _, got = self._call(
            "GET",
            f"/queues/{quote(queue, safe='')}/jobs",
            params=params,
            timeout=10.0 + timeout_ms / 1000,
        )
        if got.get("job") is None:
            return None
        return got["job"], str(got["token"])

    def ack(self, job_id: str, token: str | None, result: Any = None) -> bool:
        """True if acknowledged, False if the server says the job is not active."""
        body: dict[str, Any] = {"result": result}
        if token is not None:
            body["token"] = token
        status, _ = self._call(
            "POST", f"/jobs/{quote(job_id, safe='')}/ack", json=body, ok=(200, 400, 409)
        )
        return status == 200

    def fail(self, job_id: str, token: str | None, error: str) -> bool:
        body: dict[str, Any] = {"error": error}
        if token is not None:
            body["token"] = token
        status, _ = self._call(
            "POST", f"/jobs/{quote(job_id, safe='')}/fail", json=body, ok=(200, 400, 409)
        )
        return status == 200

    def get(self, job_id: str) -> dict[str, Any] | None:
        status, got = self._call("GET", f"/jobs/{quote(job_id, safe='')}", ok=(200, 404))
        return None if status == 404 else dict(got["job"])

    def health(self) -> dict[str, Any]:
        return dict(self._call("GET", "/health")[1])

    def stats(self) -> dict[str, Any]:
        return dict(self._call("GET", "/stats")[1])

    # ----- management API (hopper extension) ------------------------------------------

    def counts(self, queue: str) -> dict[str, int]:
        """Jobs per state; all zero for a queue the server does not know (yet)."""
        status, got = self._call(
            "GET", f"{self.prefix}/queues/{quote(queue, safe='')}", ok=(200, 404)
        )
        if status == 404:
            return dict.fromkeys(STATES, 0)
        counts = got["data"]["counts"]
        return {s: int(counts.get(s, 0)) for s in STATES}

    def states(self, queue: str) -> dict[str, str]:
        """Every job of a queue: id → state (paged listing of each state)."""
        out: dict[str, str] = {}
        for state in STATES:
            for start in itertools.count(0, PAGE):
                status, got = self._call(
                    "GET",
                    f"{self.prefix}/queues/{quote(queue, safe='')}/jobs",
                    params={"state": state, "start": start, "end": start + PAGE - 1},
                    ok=(200, 404),
                )
                if status == 404:
                    return out
                page = got["data"]
                for job in page:
                    out[str(job["id"])] = state
                if len(page) < PAGE or start > 10_000_000:
                    break
        return out

    def obliterate(self, queue: str) -> None:
        self._call(
            "DELETE",
            f"{self.prefix}/queues/{quote(queue, safe='')}",
            params={"force": "true"},
            ok=(200, 204, 404),
        )


class WsSession:
    """One WebSocket command connection: request/reply matched by `reqId`."""

    def __init__(self, url: str, token: str | None = None, timeout: float = 10.0) -> None:
        base = url.rstrip("/")
        ws_base = "ws://" + base.split("://", 1)[1] if "://" in base else "ws://" + base
        headers = {"authorization": f"Bearer {token}"} if token else {}
        self.timeout = timeout
        self._ids = itertools.count(1)
        self._stack = contextlib.ExitStack()
        try:
            self.conn: ClientConnection = self._stack.enter_context(
                connect(
                    ws_base + QUIET_PATH,
                    additional_headers=headers,
                    open_timeout=timeout,
                    close_timeout=1,
                    max_size=None,
                )
            )
        except (OSError, WebSocketException, TimeoutError) as e:
            raise Unavailable(f"WebSocket connect: {type(e).__name__}: {e}") from e

    def request(self, msg: dict[str, Any]) -> dict[str, Any]:
        req_id = next(self._ids)
        deadline = time.monotonic() + self.timeout
        try:
            self.conn.send(orjson.dumps({**msg, "reqId": req_id}).decode())
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise Unavailable(f"WebSocket {msg.get('cmd')}: no reply in {self.timeout} s")
                reply = orjson.loads(self.conn.recv(timeout=left))
                if isinstance(reply, dict) and reply.get("reqId") == req_id:
                    return reply
        except (OSError, WebSocketException, TimeoutError) as e:
            raise Unavailable(f"WebSocket {msg.get('cmd')}: {type(e).__name__}: {e}") from e

    def push(self, queue: str, body: dict[str, Any]) -> str:
        reply = self._ok(self.request({"cmd": "PUSH", "queue": queue, **body}), "PUSH")
        return str(reply["id"])

    def push_many(self, queue: str, jobs: list[dict[str, Any]]) -> list[str]:
        reply = self._ok(self.request({"cmd": "PUSHB", "queue": queue, "jobs": jobs}), "PUSHB")
        return [str(i) for i in reply["ids"]]

    def pull(self, queue: str, timeout_ms: int = 0) -> Pulled | None:
        # A lock owner makes the reply carry the lock token (bunqueue's PULL).
        msg: dict[str, Any] = {"cmd": "PULL", "queue": queue, "owner": "hopper-soak"}
        if timeout_ms:
            msg["timeout"] = timeout_ms
        reply = self._ok(self.request(msg), "PULL")
        job = reply.get("job")
        if job is None:
            return None
        # bunqueue's job object names the stall count `stallCount`; the model reads the
        # HTTP shape's `stalls`.
        return {**job, "stalls": job["stallCount"]}, str(reply["token"])

    def ack(self, job_id: str, token: str | None, result: Any = None) -> bool:
        msg: dict[str, Any] = {"cmd": "ACK", "id": job_id, "result": result}
        if token is not None:
            msg["token"] = token
        return _applied(self.request(msg))

    def fail(self, job_id: str, token: str | None, error: str) -> bool:
        msg: dict[str, Any] = {"cmd": "FAIL", "id": job_id, "error": error}
        if token is not None:
            msg["token"] = token
        return _applied(self.request(msg))

    @staticmethod
    def _ok(reply: dict[str, Any], cmd: str) -> dict[str, Any]:
        if reply.get("ok") is not True:
            message = str(reply.get("error"))
            if "unavailable" in message.lower():
                raise Unavailable(f"WebSocket {cmd}: {message}")
            raise ApiError("WS", cmd, 0, message)
        return reply

    def abort(self) -> None:
        """Drops the connection without a closing handshake (a crashed client)."""
        with contextlib.suppress(OSError):
            self.conn.socket.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(OSError):
            self.conn.socket.close()
        self.close()

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._stack.close()


def _applied(reply: dict[str, Any]) -> bool:
    """An ACK/FAIL took effect: ok, and not `{applied: false}` (a late outcome for a job
    the server had already failed by its timeout)."""
    data = reply.get("data")
    late = isinstance(data, dict) and data.get("applied") is False
    return reply.get("ok") is True and not late

"""The real job server as a child process, and assertion helpers for the contract tests."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from hopper.server_process import SCRUBBED_PATH as SCRUBBED_PATH
from hopper.server_process import ServerProcess, ServerStartError
from hopper.server_process import free_port as free_port

STARTUP_TIMEOUT_S = 15.0
SHUTDOWN_TIMEOUT_S = 10.0
HOST = "127.0.0.1"
# The server under test is `python -m hopper` from this environment, or the executable
# HOPPER_TEST_SERVER names (test_packaging points it at the single-file binary), which
# then runs with a scrubbed environment, as on a machine without Python or a virtualenv.
SERVER_EXECUTABLE = os.environ.get("HOPPER_TEST_SERVER")
# The Granian interface every test server runs on (`--interface`): the full suite runs
# on the default, a smoke subset on the other (see the Makefile's test target).
INTERFACE = os.environ.get("HOPPER_TEST_INTERFACE", "asgi")


@dataclass
class Server:
    """A running server: its base URLs and a client bound to it."""

    url: str
    ws_url: str
    process: ServerProcess
    client: httpx.Client

    @property
    def tcp_port(self) -> int:
        """The bunqueue TCP protocol's port."""
        assert self.process.tcp_port is not None
        return self.process.tcp_port

    @property
    def proc(self) -> subprocess.Popen[bytes]:
        assert self.process.proc is not None
        return self.process.proc

    def log_text(self) -> str:
        return self.process.log_tail(4000)


ServerFactory = Callable[..., Server]


@contextlib.contextmanager
def run_server(
    workdir: Path,
    executable: str | None = None,
    args: Sequence[str] = (),
    command: str = "serve",
    **env: str,
) -> Iterator[Server]:
    """Starts `hopper serve` (or `command`) with `args`, and `env` added to a cleaned
    environment, a data directory of its own under `workdir`; stops it on exit, where
    it must end with status 0 within SHUTDOWN_TIMEOUT_S. `executable` (default:
    HOPPER_TEST_SERVER) is a `hopper` command run with a scrubbed environment instead of
    this interpreter's `python -m hopper`."""
    port = free_port()
    data_dir = workdir / f"data-{port}"
    data_dir.mkdir(parents=True, exist_ok=True)
    process = ServerProcess.hopper(
        args,
        log=workdir / f"server-{port}.log",
        command=command,
        executable=executable or SERVER_EXECUTABLE,
        env={"HOPPER_DATA_DIR": str(data_dir), "HOPPER_INTERFACE": INTERFACE, **env},
        port=port,
    )
    with serving(process, _stop) as server:
        yield server


@contextlib.contextmanager
def serving(process: ServerProcess, stop: Callable[[ServerProcess], object]) -> Iterator[Server]:
    """Starts `process` (a failed start fails the test), yields it as a `Server` with a
    client, and ends with `stop`."""
    try:
        process.start(STARTUP_TIMEOUT_S)
    except ServerStartError as e:
        pytest.fail(str(e))
    client = httpx.Client(base_url=process.url, timeout=10.0)
    try:
        yield Server(process.url, process.ws_url, process, client)
    finally:
        client.close()
        stop(process)


def _stop(process: ServerProcess) -> None:
    code = process.stop(SHUTDOWN_TIMEOUT_S)
    tail = process.log_tail(4000)
    assert code is not None
    if code == -signal.SIGKILL:
        pytest.fail(f"server ignored SIGTERM for {SHUTDOWN_TIMEOUT_S} s:\n{tail}")
    assert code == 0, f"server exited with {code} after SIGTERM:\n{tail}"


# ----- helpers shared by the test modules ---------------------------------------------


def expect_ok(resp: httpx.Response) -> dict[str, Any]:
    assert resp.status_code == 200, (resp.status_code, resp.text)
    body = resp.json()
    assert body["ok"] is True, body
    return body  # type: ignore[no-any-return]


def expect_error(resp: httpx.Response, status: int, message: str | None = None) -> str:
    """Asserts the `{ok:false,error}` envelope; returns the error text."""
    assert resp.status_code == status, (resp.status_code, resp.text)
    assert resp.headers["content-type"].startswith("application/json"), resp.headers
    body = resp.json()
    assert set(body) == {"ok", "error"}, body
    assert body["ok"] is False
    assert isinstance(body["error"], str) and body["error"], body
    if message is not None:
        assert body["error"] == message
    return body["error"]  # type: ignore[no-any-return]


def push(client: httpx.Client, queue: str, **body: Any) -> str:
    body.setdefault("data", {"n": 1})
    resp = client.post(f"/queues/{queue}/jobs", json=body)
    job_id = expect_ok(resp)["id"]
    assert isinstance(job_id, str) and job_id
    return job_id


def pull(client: httpx.Client, queue: str, **params: Any) -> tuple[dict[str, Any], str]:
    body = expect_ok(client.get(f"/queues/{queue}/jobs", params=params))
    assert body["job"] is not None, body
    return body["job"], body["token"]


def get_job(client: httpx.Client, job_id: str) -> dict[str, Any]:
    return expect_ok(client.get(f"/jobs/{job_id}"))["job"]  # type: ignore[no-any-return]


def wait_until(predicate: Callable[[], Any], timeout: float = 5.0, step: float = 0.02) -> Any:
    """Polls `predicate` until truthy (bounded in time); returns its last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(step)

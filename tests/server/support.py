"""The real job server as a child process, and assertion helpers for the contract tests."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from hopper.server.config import clean_environment

STARTUP_TIMEOUT_S = 15.0
SHUTDOWN_TIMEOUT_S = 10.0
HOST = "127.0.0.1"
# The server under test is `python -m hopper` from this environment, or the executable
# HOPPER_TEST_SERVER names (tests/packaging points it at the single-file binary), which
# then runs with a scrubbed environment, as on a machine without Python or a virtualenv.
SERVER_EXECUTABLE = os.environ.get("HOPPER_TEST_SERVER")
SCRUBBED_PATH = "/usr/bin:/bin"


@dataclass
class Server:
    """A running server: its base URLs and a client bound to it."""

    url: str
    ws_url: str
    proc: subprocess.Popen[bytes]
    log: Path
    client: httpx.Client

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]


ServerFactory = Callable[..., Server]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def run_server(
    workdir: Path,
    executable: str | None = None,
    args: Sequence[str] = (),
    command: str = "serve",
    **env: str,
) -> Iterator[Server]:
    """Starts `hopper serve` (or `command`) with `args`, and `env` added to a cleaned
    environment; stops it on exit. `executable` (default: HOPPER_TEST_SERVER) is a
    `hopper` command to run with a scrubbed environment instead of this interpreter's
    `python -m hopper`."""
    port = free_port()
    executable = executable or SERVER_EXECUTABLE
    if executable:
        prefix = [executable]
        child_env = {"PATH": SCRUBBED_PATH}
    else:
        prefix = [sys.executable, "-m", "hopper"]
        child_env = clean_environment()
    data_dir = workdir / f"data-{port}"
    data_dir.mkdir(parents=True, exist_ok=True)
    child_env["HOPPER_DATA_DIR"] = str(data_dir)
    child_env.update(env)
    log = workdir / f"server-{port}.log"
    cmd = [*prefix, command, "--host", HOST, "--port", str(port), *args]
    with log.open("wb") as out:
        proc = subprocess.Popen(
            cmd, env=child_env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
    url = f"http://{HOST}:{port}"
    client = httpx.Client(base_url=url, timeout=10.0)
    server = Server(url, f"ws://{HOST}:{port}", proc, log, client)
    try:
        _wait_healthy(server)
        yield server
    finally:
        client.close()
        _stop(server)


def _wait_healthy(server: Server) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            pytest.fail(f"server exited with {server.proc.returncode}:\n{server.log_text()}")
        try:
            if httpx.get(server.url + "/health", timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    server.proc.kill()
    server.proc.wait(5)
    pytest.fail(f"server did not answer /health within {STARTUP_TIMEOUT_S} s:\n{server.log_text()}")


def _stop(server: Server) -> None:
    proc = server.proc
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        code = proc.wait(SHUTDOWN_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)
        pytest.fail(f"server ignored SIGTERM for {SHUTDOWN_TIMEOUT_S} s:\n{server.log_text()}")
    assert code == 0, f"server exited with {code} after SIGTERM:\n{server.log_text()}"


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

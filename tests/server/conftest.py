"""Fixtures that run the real job server (`python -m hopper serve`) as a child process.

`server` is one default server shared by the whole session; `start_server(**env)` starts a
server with its own configuration for one test. Each server listens on a free loopback
port and is stopped with SIGTERM at teardown, which must end it with exit code 0 within
10 s (see `support.run_server`).
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from browser_support import launch_chromium
from support import Server, ServerFactory, run_server
from tcp_client import ON_BUNQUEUE, Conn, run_bunqueue


@pytest.fixture(scope="session")
def server_workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("hopper-server")


@pytest.fixture(scope="session")
def server(server_workdir: Path) -> Iterator[Server]:
    """The default server (no auth, no rate limit), shared by the session."""
    with run_server(server_workdir) as s:
        yield s


@pytest.fixture
def start_server(server_workdir: Path) -> Iterator[ServerFactory]:
    """Starts servers with a given environment for one test; all stopped at teardown."""
    with contextlib.ExitStack() as stack:

        def start(**env: str) -> Server:
            return stack.enter_context(run_server(server_workdir, **env))

        yield start


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Chromium for the browser tests (skipped without it: see browser_support)."""
    yield from launch_chromium()


@pytest.fixture
def client(server: Server) -> httpx.Client:
    return server.client


@pytest.fixture
def queue() -> str:
    """A queue name no other test uses."""
    return f"q-{uuid.uuid4().hex[:12]}"


# ----- the bunqueue protocol suites' server: hopper, or the reference itself -----------
# (HOPPER_TCP_TEST_TARGET=bunqueue runs test_tcp_*.py against bunqueue 2.9.5, to check
# that the tests describe the reference.)


@pytest.fixture(scope="module")
def target(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """The server under test, shared by the module (no auth, no rate limit)."""
    if ON_BUNQUEUE:
        with run_bunqueue(tmp_path_factory.mktemp("bunqueue")) as s:
            yield s
    else:
        yield request.getfixturevalue("server")


@pytest.fixture
def start_target(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ServerFactory]:
    """Starts a server under test with the given environment, for one test."""
    if not ON_BUNQUEUE:
        yield request.getfixturevalue("start_server")
        return
    with contextlib.ExitStack() as stack:

        def start(**env: str) -> Server:
            return stack.enter_context(run_bunqueue(tmp_path, **env))

        yield start


@pytest.fixture
def connect(target: Server) -> Iterator[Callable[[], Conn]]:
    """Opens connections to `target`; all closed at teardown."""
    with contextlib.ExitStack() as stack:

        def open_conn() -> Conn:
            return stack.enter_context(Conn(target.tcp_port))

        yield open_conn


@pytest.fixture
def conn(connect: Callable[[], Conn]) -> Conn:
    return connect()

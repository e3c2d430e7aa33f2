"""Fixtures that run the real job server (`python -m hopper serve`) as a child process.

`server` is one default server shared by the whole session; `start_server(**env)` starts a
server with its own configuration for one test. Each server listens on a free loopback
port and is stopped with SIGTERM at teardown, which must end it with exit code 0 within
10 s (see `support.run_server`).
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from support import Server, ServerFactory, run_server


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


@pytest.fixture
def client(server: Server) -> httpx.Client:
    return server.client


@pytest.fixture
def queue() -> str:
    """A queue name no other test uses."""
    return f"q-{uuid.uuid4().hex[:12]}"

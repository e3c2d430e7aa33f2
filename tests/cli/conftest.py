"""Fixtures for the client-command tests: a live server (hopper, or bunqueue 2.9.5 with
HOPPER_TCP_TEST_TARGET=bunqueue), and `cli`, which runs `python -m hopper <args>` against
it as a subprocess. The server helpers are those of tests/server."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "server"))

from cli_support import Cli, Run
from support import Server, run_server
from tcp_client import ON_BUNQUEUE, run_bunqueue

TOKEN = "cli-secret"


def _start(workdir: Path, **env: str) -> Iterator[Server]:
    if ON_BUNQUEUE:
        with run_bunqueue(workdir, **env) as s:
            yield s
    else:
        with run_server(workdir, **env) as s:
            yield s


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The server under test (no auth), shared by the module."""
    yield from _start(tmp_path_factory.mktemp("cli-server"))


@pytest.fixture(scope="module")
def auth_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server that wants the token TOKEN."""
    yield from _start(tmp_path_factory.mktemp("cli-auth"), AUTH_TOKENS=TOKEN)


@pytest.fixture
def cli(server: Server) -> Cli:
    return Cli(server.tcp_port)


__all__ = ["TOKEN", "Cli", "Run"]

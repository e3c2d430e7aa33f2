"""Servers `hopper bench` starts itself on a free loopback port and stops at the end:
`hopper serve --memory`, or the reference bunqueue server from bench/peers (Bun)."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from hopper.server.config import clean_environment
from hopper.server_process import HOST, ServerProcess, free_port

KINDS = ("hopper", "reference")


def default_peers() -> Path:
    """bench/peers of the current directory, else of the source tree this file is in."""
    here = Path("bench/peers")
    if here.is_dir():
        return here.resolve()
    return Path(__file__).resolve().parents[3] / "bench" / "peers"


def reference(peers: Path, log: Path, port: int | None = None) -> ServerProcess:
    """bunqueue's server (Bun, from `peers`), in memory, with no effective rate limit."""
    bun = peers / "node_modules" / ".bin" / "bun"
    main = peers / "node_modules" / "bunqueue" / "dist" / "main.js"
    if not bun.exists() or not main.exists():
        raise RuntimeError(f"reference server not installed: run `npm ci` in {peers}")
    port = free_port() if port is None else port
    tcp_port = free_port()
    env = {
        **clean_environment(),
        "HOST": HOST,
        "HTTP_PORT": str(port),
        "TCP_PORT": str(tcp_port),
        "RATE_LIMIT_MAX_REQUESTS": "1000000000",
    }
    server = ServerProcess(
        [str(bun), str(main)], port=port, log=log, env=env, cwd=peers, label="reference"
    )
    server.tcp_port = tcp_port
    return server


@contextlib.contextmanager
def start(kind: str, peers: Path | None = None) -> Iterator[ServerProcess]:
    """Starts a `hopper` (in-memory) or `reference` server; stops it on exit."""
    if kind not in KINDS:
        raise ValueError(f"unknown server kind {kind!r}")
    fd, name = tempfile.mkstemp(prefix=f"hopper-bench-{kind}-", suffix=".log")
    os.close(fd)
    log = Path(name)
    if kind == "hopper":
        server = ServerProcess.hopper(["--memory"], log=log)
    else:
        server = reference(peers or default_peers(), log)
    try:
        with server:
            yield server
    finally:
        with contextlib.suppress(OSError):
            log.unlink()

"""Servers `hopper bench` starts itself on a free loopback port and stops at the end:
`hopper serve --memory`, or the reference bunqueue server from bench/peers (Bun)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

from hopper.server.config import clean_environment

HOST = "127.0.0.1"
STARTUP_S = 30.0
STOP_GRACE_S = 10.0
KINDS = ("hopper", "reference")


@dataclass
class Started:
    label: str
    url: str
    proc: subprocess.Popen[bytes]
    log: Path


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def default_peers() -> Path:
    """bench/peers of the current directory, else of the source tree this file is in."""
    here = Path("bench/peers")
    if here.is_dir():
        return here.resolve()
    return Path(__file__).resolve().parents[3] / "bench" / "peers"


def _command(kind: str, port: int, peers: Path) -> tuple[list[str], dict[str, str], Path]:
    env = clean_environment()
    if kind == "hopper":
        cmd = [sys.executable, "-m", "hopper", "serve", "--memory"]
        return [*cmd, "--host", HOST, "--port", str(port)], env, Path.cwd()
    bun = peers / "node_modules" / ".bin" / "bun"
    main = peers / "node_modules" / "bunqueue" / "dist" / "main.js"
    if not bun.exists() or not main.exists():
        raise RuntimeError(f"reference server not installed: run `npm ci` in {peers}")
    env.update(
        HOST=HOST,
        HTTP_PORT=str(port),
        TCP_PORT=str(free_port()),
        RATE_LIMIT_MAX_REQUESTS="1000000000",
    )
    return [str(bun), str(main)], env, peers


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the server's own process group (its id), SIGKILL after the grace time."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)
    else:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)


def _wait_healthy(started: Started) -> None:
    deadline = time.monotonic() + STARTUP_S
    while time.monotonic() < deadline:
        if started.proc.poll() is not None:
            raise RuntimeError(
                f"{started.label} server exited with {started.proc.returncode}: "
                + started.log.read_text(errors="replace")[-2000:]
            )
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(started.url + "/health", timeout=1.0).status_code == 200:
                return
        time.sleep(0.05)
    raise RuntimeError(f"{started.label} server did not answer /health within {STARTUP_S:g} s")


@contextlib.contextmanager
def start(kind: str, peers: Path | None = None) -> Iterator[Started]:
    """Starts a `hopper` (in-memory) or `reference` server; stops it on exit."""
    if kind not in KINDS:
        raise ValueError(f"unknown server kind {kind!r}")
    port = free_port()
    cmd, env, cwd = _command(kind, port, peers or default_peers())
    fd, name = tempfile.mkstemp(prefix=f"hopper-bench-{kind}-", suffix=".log")
    log = Path(name)
    with os.fdopen(fd, "wb") as out:
        proc = subprocess.Popen(
            cmd,
            cwd=cwd,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # own process group: its workers stop with it
        )
    started = Started(kind, f"http://{HOST}:{port}", proc, log)
    try:
        _wait_healthy(started)
        yield started
    finally:
        _stop(proc)
        with contextlib.suppress(OSError):
            log.unlink()

"""A job server as a child process on a loopback port: what the tests, `hopper bench`,
`hopper soak` and the benchmark scripts start, stop, kill and restart.

The child runs in its own session (process group), so a SIGKILL reaches Granian's main
process and its worker at once and nothing else; SIGTERM goes to the main process alone,
which shuts its workers down in order (the graceful path users get)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType

import httpx

from hopper.ports import free_port as free_port
from hopper.server.config import clean_environment

HOST = "127.0.0.1"
# What a scrubbed child gets: a machine's system directories and nothing of ours.
SCRUBBED_PATH = "/usr/bin:/bin"


class ServerStartError(RuntimeError):
    """The server exited or did not answer its health check in time (the message ends
    with the tail of its log)."""


class ServerProcess:
    """`command` run with `env` in `cwd`, answering HTTP on `port` (healthy once
    `health_path` answers 200); its output goes to `log` (appended, so restarts keep one
    history)."""

    def __init__(
        self,
        command: Sequence[str],
        *,
        port: int,
        log: Path,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        label: str = "hopper",
        health_path: str = "/health",
    ) -> None:
        self.command = list(command)
        self.port = port
        self.log = log
        self.env = dict(clean_environment() if env is None else env)
        self.cwd = cwd
        self.label = label
        self.health_path = health_path
        self.url = f"http://{HOST}:{port}"
        self.ws_url = f"ws://{HOST}:{port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self.tcp_port: int | None = None
        """The bunqueue TCP protocol's port, when the command serves it."""

    @classmethod
    def hopper(
        cls,
        args: Sequence[str] = (),
        *,
        log: Path,
        command: str = "serve",
        executable: str | None = None,
        env: Mapping[str, str] | None = None,
        port: int | None = None,
        tcp_port: int | None = None,
    ) -> ServerProcess:
        """`hopper serve` (or `command`) with `args`, from this interpreter, or from the
        `executable` given (an installed `hopper` or the single-file binary), which then
        runs with a scrubbed environment: PATH of the system directories only. `env` is
        added to either. The bunqueue TCP listener gets `tcp_port`, or a free port of
        its own (never the shared default 6789)."""
        port = free_port() if port is None else port
        tcp_port = free_port() if tcp_port is None else tcp_port
        env = dict(env or {})
        if "HOPPER_POSTGRES_URL" in env:
            # A broker's backend ports are chosen here too, where all the caller's ports
            # are: a broker choosing its own could take another's port before it listens.
            env.setdefault("HOPPER_BACKEND_PORT", str(free_port()))
            env.setdefault("HOPPER_BACKEND_TCP_PORT", str(free_port()))
        if executable:
            prefix, base = [executable], {"PATH": SCRUBBED_PATH}
        else:
            prefix, base = [sys.executable, "-m", "hopper"], clean_environment()
        cmd = [*prefix, command, "--host", HOST, "--port", str(port)]
        cmd += ["--tcp-port", str(tcp_port), *args]
        process = cls(cmd, port=port, log=log, env={**base, **env})
        process.tcp_port = tcp_port
        return process

    # ----- lifecycle ------------------------------------------------------------------

    def start(self, timeout: float = 30.0, *, retry: bool = False) -> float:
        """Starts the server and waits for a 200 from its health path; returns the
        seconds from exec to that answer. With `retry`, a server that exits at once (the
        port or the data directory's lock still held by a process being killed) is
        started again until `timeout`."""
        deadline = time.monotonic() + timeout
        while True:
            spawned = time.monotonic()
            self.launch()
            if self.wait_healthy(deadline):
                self.starts += 1
                return time.monotonic() - spawned
            if not retry or time.monotonic() >= deadline:
                code = self.proc.returncode if self.proc else None
                self.kill()
                what = f"exited with {code}" if code is not None else "did not become healthy"
                raise ServerStartError(
                    f"{self.label} server {what} within {timeout:g} s:\n{self.log_tail()}"
                )
            time.sleep(0.2)

    def launch(self) -> None:
        """Starts the process without waiting for it (`wait_healthy` does that)."""
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as out:
            out.write(f"--- start {self.starts + 1}: {' '.join(self.command)}\n".encode())
            out.flush()
            self.proc = subprocess.Popen(
                self.command,
                cwd=self.cwd,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )

    def wait_healthy(self, deadline: float) -> bool:
        """Polls the health path every 5 ms until a 200 (True), the process exits or
        `deadline` (time.monotonic()) passes (False)."""
        assert self.proc is not None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(self.url + self.health_path, timeout=1.0).status_code == 200:
                    return True
            time.sleep(0.005)
        return False

    def stop(self, grace: float = 10.0) -> int | None:
        """SIGTERM to the main process (a clean shutdown); SIGKILL to the whole group if
        it is still running after `grace` seconds. Returns the exit status, which is None
        only if the server was never started."""
        proc = self.proc
        if proc is None:
            return None
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                return proc.wait(grace)
        self.kill()
        return proc.returncode

    def kill(self) -> None:
        """SIGKILL to the whole process group (main process and workers), then reap."""
        proc = self.proc
        if proc is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(10)

    @property
    def pid(self) -> int:
        assert self.proc is not None, "not launched"
        return self.proc.pid

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def __enter__(self) -> ServerProcess:
        self.start()
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

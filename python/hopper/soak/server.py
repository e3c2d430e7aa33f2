"""A `hopper serve` the suite starts itself, SIGKILLs and restarts on the same data
directory and port. It runs in its own session (process group), so a kill reaches
Granian's main process and its worker at once, and nothing else."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from hopper.server.config import clean_environment

HOST = "127.0.0.1"
STARTUP_S = 30.0
STOP_GRACE_S = 10.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


class ManagedServer:
    def __init__(self, data_dir: Path, log: Path, *, fsync: str, stall_interval_ms: int) -> None:
        self.data_dir = data_dir
        self.log = log
        self.fsync = fsync
        self.stall_interval_ms = stall_interval_ms
        self.port = free_port()
        self.url = f"http://{HOST}:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def start(self) -> None:
        """Starts the server and waits for /health (a restart keeps the port: the
        clients' URL stays valid; a port still held is retried until STARTUP_S)."""
        deadline = time.monotonic() + STARTUP_S
        for _ in range(100):
            if self._start_once(deadline):
                self.starts += 1
                return
            if time.monotonic() >= deadline:
                break
            time.sleep(0.2)
        raise RuntimeError(f"hopper serve did not start on {self.url}:\n{self.log_tail()}")

    def _start_once(self, deadline: float) -> bool:
        env = clean_environment()
        cmd = [
            sys.executable,
            "-m",
            "hopper",
            "serve",
            "--host",
            HOST,
            "--port",
            str(self.port),
            "--data-dir",
            str(self.data_dir),
            "--fsync",
            self.fsync,
            "--stall-interval-ms",
            str(self.stall_interval_ms),
        ]
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as out:
            out.write(f"--- start {self.starts + 1}: {' '.join(cmd[3:])}\n".encode())
            out.flush()
            self.proc = subprocess.Popen(
                cmd,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False  # e.g. the port or the directory lock not yet released
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(self.url + "/health", timeout=1.0).status_code == 200:
                    return True
            time.sleep(0.05)
        self.kill()
        return False

    def kill(self) -> None:
        """SIGKILL to the whole process group, then reap it."""
        proc = self.proc
        if proc is None:
            return
        if proc.poll() is None:  # never signal a group whose leader was already reaped
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(10)

    def stop(self) -> int | None:
        """SIGTERM (a clean shutdown), SIGKILL after the grace time; the exit code."""
        proc = self.proc
        if proc is None:
            return None
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                return proc.wait(STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                pass
        self.kill()
        return proc.returncode

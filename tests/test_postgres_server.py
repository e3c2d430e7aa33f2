"""The throwaway PostgreSQL the cluster tests run on: it starts on loopback with fsync
on, and stopping it (or the end of the process that asked for it) leaves no server and
no directory behind."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from postgres_server import Postgres, bin_dir, start_for_test, stop

SCRIPT = Path(__file__).with_name("postgres_server.py")


def psql(pg: Postgres, sql: str) -> str:
    done = subprocess.run(
        [str(bin_dir() / "psql"), "-h", "127.0.0.1", "-p", str(pg.port), "-U", "postgres",
         "-Atc", sql],
        capture_output=True, text=True, timeout=10, check=True,
    )  # fmt: skip
    return done.stdout.strip()


def gone(pid: int, within_s: float = 10) -> bool:
    """Whether `pid` ends (or is a zombie nobody reaped yet) within a bounded wait."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except FileNotFoundError:
            return True
        if stat.rsplit(")", 1)[1].split()[0] == "Z":
            return True
        time.sleep(0.05)
    return False


def test_the_server_listens_on_loopback_with_fsync_on(postgres: Postgres) -> None:
    assert psql(postgres, "SHOW fsync") == "on"
    assert psql(postgres, "SHOW synchronous_commit") == "on"
    assert psql(postgres, "SHOW listen_addresses") == "127.0.0.1"


def test_stop_ends_the_server_and_removes_its_directory() -> None:
    pg = start_for_test()
    pid = int((pg.data / "postmaster.pid").read_text().split()[0])
    stop(pg)
    assert not pg.dir.exists()
    assert gone(pid)


def test_a_server_outlives_no_process_that_asked_for_it(postgres: Postgres) -> None:
    # (`postgres` skips or fails this test when PostgreSQL is missing.)
    owner = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        out = subprocess.run(
            [sys.executable, str(SCRIPT), "start", "--watch-pid", str(owner.pid)],
            capture_output=True, text=True, timeout=60, check=True,
        )  # fmt: skip
        pg = Postgres(Path(json.loads(out.stdout)["dir"]), 0)
        pid = int((pg.data / "postmaster.pid").read_text().split()[0])
    finally:
        owner.kill()
        owner.wait()
    deadline = time.monotonic() + 15
    while pg.dir.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not pg.dir.exists(), "the watcher stopped the server once its owner was gone"
    assert gone(pid)

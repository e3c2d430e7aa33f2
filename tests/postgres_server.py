"""A throwaway PostgreSQL for tests: initdb and pg_ctl in a fresh temp dir, on a
127.0.0.1 port reserved until it listens, fsync on, stopped at the end.

Used by pytest (``start``/``stop`` below) and, as a command, by the Rust tests
(``python3 tests/postgres_server.py start --watch-pid PID`` prints one JSON line;
``stop DIR``), so both languages start the server the same way. initdb refuses to run as
root, so as root every server command runs as the ``postgres`` user (``runuser``).

``--watch-pid`` leaves a small watcher process behind that stops the server once that
process is gone, so a test binary that is killed (or shares one server through a static
that is never dropped) leaks no server.
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import importlib.util
import json
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any


def _load_ports() -> Any:
    """hopper.ports, or, where hopper is not installed (the Rust tests run this script with
    a plain `python3`), the same file loaded alone: it needs only the standard library."""
    with contextlib.suppress(ImportError):
        import hopper.ports

        return hopper.ports
    path = Path(__file__).resolve().parent.parent / "python" / "hopper" / "ports.py"
    spec = importlib.util.spec_from_file_location("hopper_ports", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


reserve_port = _load_ports().reserve_port

# Exit status of the command when no PostgreSQL is installed (the caller decides whether
# that fails or skips its tests: HOPPER_REQUIRE_POSTGRES=1 makes it fail).
MISSING = 3
START_TIMEOUT_S = 30
STOP_TIMEOUT_S = 10
WATCH_INTERVAL_S = 0.5


class PostgresMissing(RuntimeError):
    """No initdb/pg_ctl on this machine."""


@dataclass(frozen=True)
class Postgres:
    dir: Path
    port: int

    @property
    def data(self) -> Path:
        return self.dir / "data"

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"


def bin_dir() -> Path:
    """The newest installed server's binaries: Debian's versioned directories first,
    then whatever ``pg_ctl`` the PATH has."""
    versions = [Path(p).parent for p in glob.glob("/usr/lib/postgresql/*/bin/pg_ctl")]
    numbered = [v for v in versions if v.parent.name.isdigit()]
    if numbered:
        return max(numbered, key=lambda v: int(v.parent.name))
    found = shutil.which("pg_ctl")
    if found and shutil.which("initdb"):
        return Path(os.path.realpath(found)).parent
    raise PostgresMissing(
        "PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/pg_ctl, no pg_ctl on PATH): "
        "apt-get install postgresql"
    )


def _as_server_user(cmd: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


def _run(cmd: list[str], timeout: float) -> None:
    done = subprocess.run(
        _as_server_user(cmd), capture_output=True, text=True, timeout=timeout, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({done.returncode}): {done.stderr.strip()}")


def start() -> Postgres:
    """Creates and starts a server; raises PostgresMissing when there is none to run."""
    bindir = bin_dir()
    base = Path(tempfile.mkdtemp(prefix="hopper-pg-"))
    if os.geteuid() == 0:
        user = pwd.getpwnam("postgres")
        os.chown(base, user.pw_uid, user.pw_gid)
    # The port is held until the server listens on it (PostgreSQL binds with
    # SO_REUSEADDR): chosen in this process, it could otherwise be chosen meanwhile by
    # the process that runs the tests (a Rust test binary picks its servers' ports in
    # threads of its own), and the later of the two to listen would fail.
    held = reserve_port("127.0.0.1")
    pg = Postgres(base, held.getsockname()[1])
    try:
        # --no-sync speeds up initdb only; the server itself runs with fsync on.
        _run(
            [
                str(bindir / "initdb"),
                "-D",
                str(pg.data),
                "-A",
                "trust",
                "-U",
                "postgres",
                "--no-sync",
            ],
            START_TIMEOUT_S,
        )
        # A cluster of 3 brokers with 4 slots holds about 26 sessions (standbys' watches,
        # owners' logs, leases and outbox relays, fronts' slot tables and id registries);
        # a test module keeps one cluster up while another test starts its own.
        options = (
            f"-c listen_addresses=127.0.0.1 -p {pg.port} -c unix_socket_directories={base} "
            "-c fsync=on -c synchronous_commit=on -c max_connections=200 -c shared_buffers=32MB"
        )
        _run(
            [
                str(bindir / "pg_ctl"),
                "-D", str(pg.data),
                "-l", str(base / "server.log"),
                "-o", options,
                "-w", "-t", str(START_TIMEOUT_S),
                "start",
            ],
            START_TIMEOUT_S + 5,
        )  # fmt: skip
    except BaseException:
        stop(pg)
        raise
    finally:
        held.close()
    return pg


def start_for_test() -> Postgres:
    """`start` for a pytest fixture: without PostgreSQL the test is skipped, or fails
    when HOPPER_REQUIRE_POSTGRES=1 (as CI sets it)."""
    import pytest

    try:
        return start()
    except PostgresMissing as e:
        if os.environ.get("HOPPER_REQUIRE_POSTGRES") == "1":
            pytest.fail(f"HOPPER_REQUIRE_POSTGRES=1 but {e}")
        pytest.skip(str(e))


def _postmaster_pid(pg: Postgres) -> int | None:
    with contextlib.suppress(OSError, ValueError, IndexError):
        return int((pg.data / "postmaster.pid").read_text().split()[0])
    return None


def stop(pg: Postgres) -> None:
    """Stops the server (immediate mode: the tests own no data worth a checkpoint) and
    removes its directory. Bounded: a server that does not stop in time is killed."""
    pid = _postmaster_pid(pg)
    if pid is not None:
        try:
            _run([str(bin_dir() / "pg_ctl"), "-D", str(pg.data), "-m", "immediate", "-w",
                  "-t", str(STOP_TIMEOUT_S), "stop"], STOP_TIMEOUT_S + 5)  # fmt: skip
        except (RuntimeError, subprocess.TimeoutExpired):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    shutil.rmtree(pg.dir, ignore_errors=True)


def restart(pg: Postgres) -> None:
    """Restarts the server (fast mode: every session is cut), with the options it was
    started with; returns once it accepts connections again."""
    _run([str(bin_dir() / "pg_ctl"), "-D", str(pg.data), "-l", str(pg.dir / "server.log"),
          "-m", "fast", "-w", "-t", str(START_TIMEOUT_S), "restart"],
         START_TIMEOUT_S + 5)  # fmt: skip


def _watch(pg: Postgres, pid: int) -> None:
    """Stops the server once process `pid` is gone (run detached by --watch-pid)."""
    while True:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        time.sleep(WATCH_INTERVAL_S)
    stop(pg)


def _spawn_watcher(pg: Postgres, pid: int) -> None:
    subprocess.Popen(
        [sys.executable, __file__, "watch", str(pg.dir), str(pg.port), str(pid)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p_start = sub.add_parser("start", help="start a server; prints {dir, port, url}")
    p_start.add_argument("--watch-pid", type=int, help="stop the server when this process ends")
    p_stop = sub.add_parser("stop")
    p_stop.add_argument("dir", type=Path)
    p_watch = sub.add_parser("watch")
    p_watch.add_argument("dir", type=Path)
    p_watch.add_argument("port", type=int)
    p_watch.add_argument("pid", type=int)
    args = parser.parse_args()
    if args.command == "start":
        try:
            pg = start()
        except PostgresMissing as e:
            print(e, file=sys.stderr)
            return MISSING
        if args.watch_pid:
            _spawn_watcher(pg, args.watch_pid)
        print(json.dumps({"dir": str(pg.dir), "port": pg.port, "url": pg.url}), flush=True)
    elif args.command == "stop":
        stop(Postgres(args.dir, 0))
    else:
        _watch(Postgres(args.dir, args.port), args.pid)
    return 0


if __name__ == "__main__":
    sys.exit(main())

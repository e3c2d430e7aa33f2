"""Brokers of one cluster for the cluster tests: `hopper serve` processes on one
PostgreSQL (tests/postgres_server.py), each with its public HTTP and TCP ports (its
front), plus what the tests read from the database."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
from hopper._engine import preferred_broker
from hopper.server_process import ServerProcess
from postgres_server import Postgres, bin_dir


def broker(
    pg: Postgres,
    name: str,
    log_dir: Path,
    namespace: str,
    *,
    lease_ms: int = 30_000,
    stall_ms: int = 30_000,
    slots: int = 1,
    env: dict[str, str] | None = None,
) -> ServerProcess:
    """A broker named `name`; `env` adds to (or overrides) its environment."""
    env = {
        "HOPPER_SLOTS": str(slots),
        "HOPPER_POSTGRES_URL": pg.url,
        "HOPPER_BROKER_ID": name,
        "HOPPER_NAMESPACE": namespace,
        "HOPPER_SLOT_LEASE_MS": str(lease_ms),
        "HOPPER_STALL_INTERVAL_MS": str(stall_ms),
        "HOPPER_FSYNC": "always",
        **(env or {}),
    }
    return ServerProcess.hopper(log=log_dir / f"{name}.log", env=env)


@contextlib.contextmanager
def three_brokers(
    pg: Postgres, log_dir: Path, namespace: str, stall_ms: int = 30_000
) -> Iterator[list[ServerProcess]]:
    """Brokers a, b and c started in that order (a owns the slot), killed at the end."""
    brokers = [broker(pg, n, log_dir, namespace, stall_ms=stall_ms) for n in "abc"]
    try:
        for b in brokers:
            b.start()
        yield brokers
    finally:
        for b in brokers:
            b.kill()


def psql(pg: Postgres, sql: str) -> list[str]:
    out = subprocess.run(
        [str(bin_dir() / "psql"), pg.url, "-Atc", sql],
        capture_output=True, text=True, timeout=10, check=True,
    )  # fmt: skip
    return out.stdout.split()


def owner(pg: Postgres, namespace: str) -> str:
    """The broker the slot row names (empty before any took it)."""
    rows = psql(pg, f"SELECT owner FROM hopper_slots WHERE namespace = '{namespace}'")
    return rows[0] if rows else ""


def slot_owners(pg: Postgres, namespace: str) -> dict[int, str]:
    """{slot: owner} for every slot some broker took."""
    rows = psql(
        pg, f"SELECT slot || '=' || owner FROM hopper_slots WHERE namespace = '{namespace}'"
    )
    return {int(s): o for s, o in (r.split("=", 1) for r in rows)}


def log_epochs(pg: Postgres, namespace: str) -> list[int]:
    """The epoch of every log row of the slot, in log order."""
    sql = (
        f"SELECT epoch FROM hopper_log WHERE namespace = '{namespace}' ORDER BY segment, \"offset\""
    )
    return [int(e) for e in psql(pg, sql)]


def wait_owner(pg: Postgres, namespace: str, not_: str = "", timeout: float = 15.0) -> str:
    """Waits (bounded) until the slot row names an owner other than `not_`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = owner(pg, namespace)
        if found and found != not_:
            return found
        time.sleep(0.05)
    raise AssertionError(f"no owner other than {not_!r} within {timeout} s")


def wait_settled(
    read_owners: Callable[[], dict[int, str]], brokers: list[str], slots: int, timeout: float
) -> dict[int, str]:
    """Waits (bounded) until `read_owners()` ({slot: owner}) names, for every slot, the
    broker of `brokers` ranked first for it (the slots have settled)."""
    want = {s: preferred_broker(brokers, s) for s in range(slots)}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = read_owners()
        if found == want:
            return found
        time.sleep(0.2)
    raise AssertionError(f"slots {read_owners()} did not settle on {want}")


@contextlib.contextmanager
def event_stream(b: ServerProcess) -> Iterator[Iterator[dict[str, object]]]:
    """`GET /events` on `b`, open (its retry line read): the events as they arrive."""
    with (
        httpx.Client(timeout=httpx.Timeout(10.0, read=10.0)) as client,
        client.stream("GET", f"{b.url}/events") as stream,
    ):
        lines = stream.iter_lines()
        assert next(lines) == "retry: 3000"
        yield (json.loads(line[6:]) for line in lines if line.startswith("data: "))


def push(b: ServerProcess, queue: str, body: dict[str, object]) -> dict[str, object]:
    got = httpx.post(f"{b.url}/queues/{queue}/jobs", json=body, timeout=10)
    assert got.status_code == 200, got.text
    answer: dict[str, object] = got.json()
    return answer


REPO = Path(__file__).resolve().parents[1]
BUN = REPO / "bench/peers/node_modules/.bin/bun"


def run_sdk(script: str, port: int, queue: str, limit_s: float = 30.0) -> dict[str, object]:
    """Runs the stock SDK's tests/server/sdk/<script>.ts against 127.0.0.1:`port` on
    `queue` and returns the object it printed (`RESULT {...}`); the SDK's own BQ_* and
    BUNQUEUE_* variables are dropped, so only what is set here counts."""
    assert BUN.exists(), "bun and bunqueue are not installed (make install: npm ci in bench/peers)"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BQ_", "BUNQUEUE_"))}
    env |= {"BQ_HOST": "127.0.0.1", "BQ_PORT": str(port), "BQ_QUEUE": queue}
    command = [str(BUN), "--no-install", str(REPO / f"tests/server/sdk/{script}.ts")]
    done = subprocess.run(
        command, cwd=REPO, env=env, capture_output=True, text=True, timeout=limit_s
    )
    results = [x for x in done.stdout.splitlines() if x.startswith("RESULT ")]
    assert done.returncode == 0 and len(results) == 1, done.stdout[-4000:] + done.stderr[-4000:]
    result: dict[str, object] = json.loads(results[0].removeprefix("RESULT "))
    return result

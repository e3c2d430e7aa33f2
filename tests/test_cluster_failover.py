"""Two `hopper serve` brokers on one PostgreSQL (phase 1, active/standby): the first owns
the cluster's slot and serves; the second waits without serving.

- SIGKILL the first: the second takes the slot over at once (the dead process's advisory
  lock is gone, long before its 30 s lease would end), recovers the log, and serves the
  job pushed on the first.
- SIGSTOP the first past its lease: the second takes over when the lease ends; SIGCONT
  the first, and it refuses every change (503), and the log has no row of its epoch
  after the second's first row.

Brokers do not forward yet (docs/cluster.md)."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from hopper.server_process import ServerProcess
from postgres_server import Postgres, bin_dir, start_for_test, stop

LEASE_MS = 30_000
TAKEOVER_S = 10  # bounded wait; the test requires far less than the lease


@pytest.fixture(scope="module")
def postgres() -> Iterator[Postgres]:
    pg = start_for_test()
    yield pg
    stop(pg)


def broker(
    pg: Postgres, name: str, log_dir: Path, namespace: str, lease_ms: int = LEASE_MS
) -> ServerProcess:
    env = {
        "HOPPER_POSTGRES_URL": pg.url,
        "HOPPER_BROKER_ID": name,
        "HOPPER_NAMESPACE": namespace,
        "HOPPER_SLOT_LEASE_MS": str(lease_ms),
        "HOPPER_FSYNC": "always",
    }
    return ServerProcess.hopper(log=log_dir / f"{name}.log", env=env)


def test_a_standby_takes_over_when_the_owner_is_killed(postgres: Postgres, tmp_path: Path) -> None:
    a, b = (broker(postgres, name, tmp_path, "kill") for name in "ab")
    try:
        a.start()
        pushed = httpx.post(f"{a.url}/queues/q/jobs", json={"data": {"n": 1}}).json()
        assert pushed["ok"], pushed
        b.launch()
        assert not b.wait_healthy(time.monotonic() + 1.5), "the standby serves nothing"
        assert b.running, b.log_tail()

        a.kill()
        killed = time.monotonic()
        assert b.wait_healthy(killed + TAKEOVER_S), b.log_tail()
        took = time.monotonic() - killed
        assert took < LEASE_MS / 1000 / 3, f"took over after {took:.1f} s"

        pulled = httpx.get(f"{b.url}/queues/q/jobs").json()
        assert pulled["job"]["id"] == pushed["id"], pulled
        assert pulled["job"]["data"] == {"n": 1}
    finally:
        a.kill()
        b.stop()


def log_epochs(pg: Postgres, namespace: str) -> list[int]:
    sql = (
        f"SELECT epoch FROM hopper_log WHERE namespace = '{namespace}' ORDER BY segment, \"offset\""
    )
    out = subprocess.run(
        [str(bin_dir() / "psql"), pg.url, "-Atc", sql],
        capture_output=True, text=True, timeout=10, check=True,
    )  # fmt: skip
    return [int(line) for line in out.stdout.split()]


def test_an_owner_paused_past_its_lease_stops_serving(postgres: Postgres, tmp_path: Path) -> None:
    lease_ms = 1500
    a, b = (broker(postgres, name, tmp_path, "pause", lease_ms) for name in "ab")
    try:
        a.start()
        pushed = httpx.post(f"{a.url}/queues/q/jobs", json={"data": 1}).json()
        b.launch()
        assert a.proc is not None
        os.killpg(a.proc.pid, signal.SIGSTOP)
        try:
            # A's session and lock live on: B waits for the lease to end.
            assert b.wait_healthy(time.monotonic() + lease_ms / 1000 + TAKEOVER_S), b.log_tail()
        finally:
            os.killpg(a.proc.pid, signal.SIGCONT)
        refused = httpx.post(f"{a.url}/queues/q/jobs", json={"data": "from a"})
        assert refused.status_code == 503, refused.text
        assert httpx.get(f"{a.url}/queues/q/jobs").status_code == 503
        assert httpx.get(f"{a.url}/ready").status_code == 503
        assert httpx.get(f"{b.url}/ready").status_code == 200
        assert httpx.post(f"{b.url}/queues/q/jobs", json={"data": "from b"}).json()["ok"]
        assert httpx.get(f"{b.url}/queues/q/jobs").json()["job"]["id"] == pushed["id"]

        epochs = log_epochs(postgres, "pause")
        newest = max(epochs)
        assert epochs[epochs.index(newest) :] == [newest] * (len(epochs) - epochs.index(newest))
    finally:
        a.kill()
        b.stop()

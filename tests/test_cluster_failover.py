"""Two `hopper serve` brokers on one PostgreSQL (phase 1, active/standby): the first owns
the cluster's slot and serves; the second waits without serving; SIGKILL the first and
the second takes the slot over at once (the dead process's advisory lock is gone, long
before its 30 s lease would end), recovers the log, and serves the job pushed on the
first. Brokers do not forward yet (docs/cluster.md)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from hopper.server_process import ServerProcess
from postgres_server import Postgres, start_for_test, stop

LEASE_MS = 30_000
TAKEOVER_S = 10  # bounded wait; the test requires far less than the lease


@pytest.fixture(scope="module")
def postgres() -> Iterator[Postgres]:
    pg = start_for_test()
    yield pg
    stop(pg)


def broker(pg: Postgres, name: str, log_dir: Path) -> ServerProcess:
    env = {
        "HOPPER_POSTGRES_URL": pg.url,
        "HOPPER_BROKER_ID": name,
        "HOPPER_NAMESPACE": "failover",
        "HOPPER_SLOT_LEASE_MS": str(LEASE_MS),
        "HOPPER_FSYNC": "always",
    }
    return ServerProcess.hopper(log=log_dir / f"{name}.log", env=env)


def test_a_standby_takes_over_when_the_owner_is_killed(postgres: Postgres, tmp_path: Path) -> None:
    a, b = broker(postgres, "a", tmp_path), broker(postgres, "b", tmp_path)
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

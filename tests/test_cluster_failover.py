"""Failures of a three-broker cluster on one PostgreSQL, under load, `--fsync always`:

- SIGKILL the slot's owner mid-load: no acknowledged push is lost, no job is delivered
  after its ack was acknowledged, and a new owner serves within 2 s;
- SIGSTOP the owner past its lease, then SIGCONT: it stops serving the slot (its worker
  exits and comes back as a standby), the log has no row of its epoch after the new
  owner's first, and its public ports serve through the new owner;
- restart PostgreSQL under load: the brokers serve again within 5 s.

The load runs through every broker's public ports (a client of a killed broker moves to
the next), bounded in count and time."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path

import httpx
from cluster_brokers import broker, log_epochs, owner, push, three_brokers, wait_owner
from cluster_load import Load, first_ok_after
from postgres_server import Postgres, restart

TAKEOVER_S = 2.0
RESUME_S = 5.0


def test_sigkill_of_the_owner_under_load(postgres: Postgres, tmp_path: Path) -> None:
    ns = "sigkill"
    with three_brokers(postgres, tmp_path, ns, stall_ms=1000) as brokers:
        assert owner(postgres, ns) == "a"
        with Load(brokers, "work") as load:
            time.sleep(1.5)
            load.dead.add(0)
            killed = time.monotonic()
            brokers[0].kill()
            assert wait_owner(postgres, ns, not_="a") in ("b", "c")
            time.sleep(2.0)
            load.stop()
            took = first_ok_after(load.ledger, killed)
        load.drain(brokers[1].url, within=15)
        ledger = load.ledger
        print(f"pushed {len(ledger.pushed)}, refused {ledger.refused}, served again after {took} s")
        assert len(ledger.pushed) > 100, "the load made too little progress to prove anything"
        lost = set(ledger.pushed) - ledger.delivered
        assert not lost, f"{len(lost)} acknowledged pushes never delivered: {sorted(lost)[:5]}"
        assert not ledger.late, f"delivered after an acknowledged ack: {ledger.late[:5]}"
        assert took is not None and took < TAKEOVER_S, f"first push served {took} s after the kill"


def test_an_owner_paused_past_its_lease_stops_serving(postgres: Postgres, tmp_path: Path) -> None:
    ns, lease_ms = "pause", 1500
    a, b = (broker(postgres, n, tmp_path, ns, lease_ms=lease_ms) for n in "ab")
    try:
        a.start()
        b.start()
        pushed = push(a, "q", {"data": 1})
        assert a.proc is not None
        os.killpg(a.proc.pid, signal.SIGSTOP)
        try:
            # A's session and lock live on: B takes over only when the lease ends.
            assert wait_owner(postgres, ns, not_="a", timeout=lease_ms / 1000 + 10) == "b"
        finally:
            os.killpg(a.proc.pid, signal.SIGCONT)
        # A's worker finds itself fenced, exits, and Granian starts a standby.
        deadline = time.monotonic() + 10
        while "lost the cluster slot" not in a.log_tail() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert "lost the cluster slot" in a.log_tail(), a.log_tail()
        assert a.running, a.log_tail()
        # A's public port now relays to B, which serves the job pushed on A.
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            # A's front may still relay to A for one poll, and then closes that relay.
            with contextlib.suppress(httpx.HTTPError):
                got = httpx.get(f"{a.url}/queues/q/jobs", timeout=5)
                if got.status_code == 200:
                    break
            time.sleep(0.05)
        assert got.json()["job"]["id"] == pushed["id"], got.text
        push(a, "q", {"data": "through a"})

        epochs = log_epochs(postgres, ns)
        newest = max(epochs)
        first_new = epochs.index(newest)
        assert epochs[first_new:] == [newest] * (len(epochs) - first_new), epochs
    finally:
        a.kill()
        b.kill()


def test_postgres_restart_under_load(postgres: Postgres, tmp_path: Path) -> None:
    ns = "restart"
    with three_brokers(postgres, tmp_path, ns, stall_ms=1000) as brokers:
        with Load(brokers, "work") as load:
            time.sleep(1.0)
            begun = time.monotonic()
            restart(postgres)
            back = time.monotonic()
            time.sleep(RESUME_S + 1)
            load.stop()
            resumed = first_ok_after(load.ledger, back)
        print(f"restart took {back - begun:.2f} s, pushes served again {resumed} s after")
        assert resumed is not None and resumed < RESUME_S, (
            f"pushes served again {resumed} s after PostgreSQL was back "
            f"(the restart took {back - begun:.1f} s)"
        )
        load.drain(brokers[1].url, within=15)
        lost = set(load.ledger.pushed) - load.ledger.delivered
        assert not lost, f"{len(lost)} acknowledged pushes never delivered: {sorted(lost)[:5]}"
        assert not load.ledger.late, load.ledger.late[:5]


def test_a_database_that_does_not_exist_stops_the_broker(
    postgres: Postgres, tmp_path: Path
) -> None:
    """Waiting cures an unreachable database, not a wrong one: the broker says why and
    exits instead of waiting forever."""
    b = broker(postgres, "a", tmp_path, "wrong")
    b.env["HOPPER_POSTGRES_URL"] = postgres.url.rsplit("/", 1)[0] + "/no_such_db"
    b.launch()
    assert b.proc is not None
    assert b.proc.wait(30) != 0
    assert 'database "no_such_db" does not exist' in b.log_tail(), b.log_tail()


def test_a_standby_stops_cleanly(postgres: Postgres, tmp_path: Path) -> None:
    """SIGTERM to a broker whose worker is still waiting for the slot ends the wait:
    status 0, not a worker Granian sees die."""
    a, b = (broker(postgres, n, tmp_path, "standby-stop") for n in "ab")
    try:
        a.start()
        b.start()  # healthy through its front, its own worker a standby
        assert b.stop() == 0, b.log_tail()
        assert "Unexpected exit" not in b.log_tail(), b.log_tail()
    finally:
        a.kill()
        b.kill()

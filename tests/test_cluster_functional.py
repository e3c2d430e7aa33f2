"""Three `hopper serve` brokers on one PostgreSQL, each reached on its own public ports:
every API works through any broker (the fronts relay to the slot's owner), and the
cluster answers as one engine would: order, delays, repeats and dedup."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from cluster_brokers import broker, event_stream, owner, push
from hopper import Engine
from hopper.server_process import ServerProcess
from postgres_server import start_for_test, stop

NS = "functional"


@pytest.fixture(scope="module")
def brokers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[ServerProcess]]:
    pg = start_for_test()
    logs = tmp_path_factory.mktemp("brokers")
    started: list[ServerProcess] = []
    try:
        for name in ("a", "b", "c"):
            b = broker(pg, name, logs, NS)
            b.start()
            started.append(b)
        assert owner(pg, NS) == "a"
        yield started
    finally:
        for b in started:
            b.stop()
        stop(pg)


def test_push_on_one_pull_on_another_ack_on_a_third(brokers: list[ServerProcess]) -> None:
    _a, b, c = brokers
    got: dict[str, httpx.Response] = {}
    poll = threading.Thread(
        target=lambda: got.setdefault(
            "pull", httpx.get(f"{b.url}/queues/relay/jobs?timeout=10000", timeout=15)
        )
    )
    poll.start()  # a long poll on b, waiting before the push exists
    pushed = push(c, "relay", {"data": {"n": 1}})
    poll.join(15)
    job = got["pull"].json()
    assert job["job"]["id"] == pushed["id"], job
    acked = httpx.post(f"{c.url}/jobs/{pushed['id']}/ack", json={"token": job["token"]})
    assert acked.json() == {"ok": True}
    for each in brokers:
        seen = httpx.get(f"{each.url}/jobs/{pushed['id']}").json()
        assert seen["job"]["state"] == "completed", seen


def test_events_of_any_broker_reach_a_stream_on_another(brokers: list[ServerProcess]) -> None:
    a, _b, c = brokers
    with event_stream(c) as events:
        pushed = push(a, "events", {"data": 1})["id"]
        for _, event in zip(range(200), events, strict=False):
            if event.get("jobId") == pushed:
                assert event["eventType"] == "pushed"
                break
        else:
            raise AssertionError("the push made on a was not streamed by c")


def test_the_tcp_protocol_through_every_broker(brokers: list[ServerProcess]) -> None:
    for each in brokers:
        cmd = [sys.executable, "-m", "hopper", "--port", str(each.tcp_port), "ping"]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
        assert done.returncode == 0 and "OK" in done.stdout, done.stdout + done.stderr


def test_order_equals_a_single_engine(brokers: list[ServerProcess]) -> None:
    """Priorities and FIFO: pushes spread over the brokers, pulled through another, come
    out in the order one embedded engine gives for the same pushes."""
    bodies = [{"data": {"i": i}, "priority": (i * 7) % 4} for i in range(40)]
    ids = [push(brokers[i % 3], "order", body)["id"] for i, body in enumerate(bodies)]
    pulled = []
    for _ in bodies:
        job = httpx.get(f"{brokers[1].url}/queues/order/jobs").json()["job"]
        pulled.append(ids.index(job["id"]))
    with Engine() as single:
        local = [single.push("order", body["data"], priority=body["priority"]) for body in bodies]
        expected = []
        for _ in bodies:
            job = single.pull("order")
            assert job is not None
            expected.append(local.index(job.id))
    assert pulled == expected


def test_delays_and_repeats_fire_once(brokers: list[ServerProcess]) -> None:
    a, _b, _c = brokers
    delayed = push(a, "timers", {"data": "later", "delay": 300})["id"]
    repeat = push(a, "timers", {"data": "tick", "repeat": {"every": 200, "limit": 3}})["id"]
    delivered: list[str] = []
    with httpx.Client(timeout=10) as client:
        for i in range(12):
            got = client.get(f"{brokers[i % 3].url}/queues/timers/jobs?timeout=600").json()
            if got["job"] is None:
                continue
            delivered.append(got["job"]["data"])
            ack = client.post(
                f"{brokers[(i + 1) % 3].url}/jobs/{got['job']['id']}/ack",
                json={"token": got["token"]},
            )
            assert ack.json() == {"ok": True}, ack.text
    assert delivered.count("later") == 1, (delayed, delivered)
    assert delivered.count("tick") == 3, (repeat, delivered)


def test_dedup_across_brokers(brokers: list[ServerProcess]) -> None:
    first = push(brokers[0], "dedup", {"data": 1, "uniqueKey": "k1"})
    again = [push(b, "dedup", {"data": 2, "uniqueKey": "k1"}) for b in brokers[1:]]
    assert {r["id"] for r in again} == {first["id"]}
    pulls = [httpx.get(f"{brokers[2].url}/queues/dedup/jobs").json()["job"] for _ in range(2)]
    assert pulls[0]["id"] == first["id"] and pulls[1] is None, pulls


def test_a_clean_stop_hands_the_slot_over_at_once(
    brokers: list[ServerProcess], tmp_path: Path
) -> None:
    """Last (it stops the owner): SIGTERM on the owner ends its lease, so the next
    broker takes the slot without waiting for the 30 s lease, and the survivors serve."""
    a, b, c = brokers
    kept = push(b, "handover", {"data": "kept"})["id"]
    assert a.stop() == 0, a.log_tail()
    got = httpx.get(f"{c.url}/queues/handover/jobs?timeout=10000", timeout=15).json()
    assert got["job"]["id"] == kept, got

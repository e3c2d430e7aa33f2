"""The embedded Python API: shapes, errors, blocking and async waits, events."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import get_args

import hopper
import hopper.job
import orjson
import pytest


@pytest.fixture
def eng():
    e = hopper.Engine()
    yield e
    e.close()


def test_push_pull_ack_round_trip(eng):
    jid = eng.push("emails", {"to": "a@b.c"}, priority=10, tags=("x",), group_id="g")
    assert len(jid) == 36 and jid[14] == "7"  # UUIDv7
    job = eng.pull("emails")
    assert job is not None
    assert (job.id, job.queue, job.data, job.priority, job.attempts) == (
        jid,
        "emails",
        {"to": "a@b.c"},
        10,
        0,
    )
    assert eng.get(jid)["state"] == "active"
    eng.ack(job.id, job.token, result={"sent": True})
    got = eng.get(jid)
    assert got["state"] == "completed" and got["result"] == {"sent": True}
    assert got["tags"] == ["x"] and got["groupId"] == "g"
    assert eng.pull("emails") is None
    with pytest.raises(hopper.InvalidStateError):
        eng.ack(job.id, job.token)


def test_get_has_every_push_field(eng):
    jid = eng.push(
        "q",
        [1, 2],
        name="n",
        priority=3,
        delay=10_000,
        max_attempts=5,
        backoff=200,
        ttl=60_000,
        timeout=5000,
        unique_key="u",
        tags=["t"],
        group_id="g",
        lifo=True,
        remove_on_complete=3,
        remove_on_fail=True,
        durable=True,
        repeat={"every": 1000, "limit": 2},
    )
    job = eng.get(jid)
    expected = {
        "id": jid,
        "queue": "q",
        "name": "n",
        "data": [1, 2],
        "priority": 3,
        "maxAttempts": 5,
        "backoff": 200,
        "ttl": 60_000,
        "timeout": 5000,
        "uniqueKey": "u",
        "tags": ["t"],
        "groupId": "g",
        "lifo": True,
        "removeOnComplete": 3,
        "removeOnFail": True,
        "durable": True,
        "state": "delayed",
        "attempts": 0,
        "progress": 0,
    }
    assert {k: job[k] for k in expected} == expected
    assert job["runAt"] - job["createdAt"] == 10_000
    assert job["repeat"] == {"every": 1000, "limit": 2, "count": 1}
    for key in ("startedAt", "completedAt", "result", "error"):
        assert job[key] is None


def test_job_id_is_idempotent_and_unique_key_dedups(eng):
    a = eng.push("q", {"v": 1}, job_id="order-1")
    b = eng.push("q", {"v": 2}, job_id="order-1")
    assert a == b == "order-1"
    assert eng.get("order-1")["data"] == {"v": 1}
    c = eng.push("q", 1, unique_key="k")
    d = eng.push("q", 2, unique_key="k")
    assert c == d
    assert eng.counts("q")["waiting"] == 2
    assert eng.stats()["duplicated"] == 2


def test_push_many_is_all_or_nothing(eng):
    ids = eng.push_many("q", [{"data": i, "priority": i, "max_attempts": 2} for i in range(5)])
    assert len(set(ids)) == 5
    assert eng.pull("q").data == 4
    with pytest.raises(hopper.InvalidInputError, match="job 1"):
        eng.push_many("q", [{"data": 1}, {"data": 2, "priority": "high"}])
    assert eng.counts("q")["waiting"] == 4


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"priority": "x"}, "priority"),
        ({"priority": 2**40}, "priority"),
        ({"priority": float("nan")}, "priority"),
        ({"max_attempts": float("nan")}, "maxAttempts"),
        ({"ttl": float("nan")}, "finite"),
        ({"delay": -1}, "delay"),
        ({"delay": float("inf")}, "delay"),
        ({"max_attempts": 0}, "maxAttempts"),
        ({"max_attempts": 10**6}, "maxAttempts"),
        ({"backoff": -5}, "backoff"),
        ({"ttl": 0}, "ttl"),
        ({"tags": "notalist"}, "tags"),
        ({"unique_key": ""}, "uniqueKey"),
        ({"depends_on": ["nope"]}, "unknown job"),
        ({"repeat": {"pattern": "bad"}}, "cron"),
        ({"repeat": {"every": 5, "pattern": "* * * * *"}}, "not both"),
        ({"lifo": "yes"}, "lifo"),
    ],
)
def test_bad_push_options_raise_typed_errors_and_harm_nothing(eng, kwargs, message):
    keep = eng.push("q", {"keep": True})
    with pytest.raises(hopper.InvalidInputError, match=message):
        eng.push("q", {"x": 1}, **kwargs)
    assert eng.counts("q")["waiting"] == 1
    assert eng.get(keep)["data"] == {"keep": True}


@pytest.mark.parametrize("queue", ["", "a b", "a/b", "x" * 300, "naïve", "tab\t"])
def test_odd_queue_names_are_refused(eng, queue):
    with pytest.raises(hopper.InvalidInputError, match="queue name"):
        eng.push(queue, 1)


def test_wrong_types_and_unknown_ids(eng):
    with pytest.raises(hopper.InvalidInputError):
        eng.push(123, 1)  # type: ignore[arg-type]
    with pytest.raises(hopper.InvalidInputError, match="JSON"):
        eng.push("q", {1, 2})
    with pytest.raises(hopper.InvalidInputError):
        eng.ack(None, None)  # type: ignore[arg-type]
    with pytest.raises(hopper.InvalidStateError, match="not found or not active"):
        eng.ack("missing", None)
    with pytest.raises(hopper.NotFoundError):
        eng.cancel("missing")
    with pytest.raises(hopper.NotFoundError):
        eng.drain("never-used")
    assert eng.get("missing") is None
    with pytest.raises(hopper.InvalidInputError):
        eng.pull("q", timeout=-1)
    with pytest.raises(hopper.InvalidInputError):
        eng.clean("q", "bogus")  # type: ignore[arg-type]


def test_payload_limit_is_configurable():
    with hopper.Engine(max_payload_bytes=100) as e:
        e.push("q", "x" * 50)
        with pytest.raises(hopper.InvalidInputError, match="over the limit"):
            e.push("q", "x" * 200)
        assert e.counts("q")["waiting"] == 1


def test_a_panic_never_escapes_and_the_engine_keeps_serving(eng):
    jid = eng.push("q", 1)
    with pytest.raises(hopper.HopperError, match="internal engine error"):
        eng._core._panic_for_test()
    assert eng.get(jid)["state"] == "waiting"
    assert eng.pull("q").id == jid


def test_blocking_pull_releases_the_gil_and_wakes_on_push(eng):
    result: list[hopper.Job | None] = []
    t = threading.Thread(target=lambda: result.append(eng.pull("q", timeout=5)))
    t.start()
    time.sleep(0.05)  # the puller is now parked inside the engine, without the GIL
    jid = eng.push("q", {"late": True})
    t.join(timeout=5)
    assert result and result[0] is not None and result[0].id == jid


def test_pull_async_is_woken_by_the_engine():
    async def main() -> None:
        with hopper.Engine() as e:
            waiter = asyncio.create_task(e.pull_async("q", timeout=5))
            await asyncio.sleep(0.02)
            assert not waiter.done()
            jid = e.push("q", 1, delay=30)  # the timer thread makes it ready
            job = await asyncio.wait_for(waiter, 5)
            assert job is not None and job.id == jid
            assert await e.pull_async("q", timeout=0.05) is None

    asyncio.run(main())


def test_subscribe_delivers_event_batches_on_the_loop():
    async def main() -> None:
        with hopper.Engine() as e:
            seen: list[dict[str, object]] = []
            unsubscribe = e.subscribe(
                lambda batch: seen.extend(orjson.loads(raw) for _k, _q, raw in batch)
            )
            jid = e.push("q", {"a": 1})
            job = e.pull("q")
            assert job is not None
            e.ack(job.id, job.token)
            for _ in range(100):
                if len(seen) >= 3:
                    break
                await asyncio.sleep(0.01)
            kinds = [ev["eventType"] for ev in seen]
            assert kinds[:2] == ["pushed", "pulled"] and "completed" in kinds
            assert (
                seen[0]["jobId"] == jid and seen[0]["data"] == {"a": 1} and seen[0]["queue"] == "q"
            )
            unsubscribe()

    asyncio.run(main())


def test_manual_clock_drives_retries_and_release_owner():
    with hopper.Engine(clock_ms=1_000_000, stall_interval_ms=1000) as e:
        jid = e.push("q", 1, backoff=100, max_attempts=2)
        job = e.pull("q", owner=7)
        assert e.fail(job.id, job.token, "x") == 100
        assert e.get(jid)["state"] == "delayed"
        e.advance_clock(100)
        job = e.pull("q", owner=7)
        assert job is not None and job.attempts == 1
        assert e.release_owner(7) == 1
        assert e.get(jid)["state"] == "waiting"
        job = e.pull("q")
        e.advance_clock(1000)  # lease not renewed: stalled back to waiting
        assert e.get(jid)["state"] == "waiting" and e.get(jid)["stalls"] == 1
        job = e.pull("q")
        assert e.fail(job.id, job.token, "final") is None
        assert e.get(jid)["state"] == "failed" and e.get(jid)["error"] == "final"
        e.retry(jid)
        assert e.get(jid)["state"] == "waiting"
    with pytest.raises(hopper.InvalidStateError):
        hopper.Engine().advance_clock(5)


def test_pull_async_on_a_queue_whose_only_jobs_are_paused_by_name_times_out():
    async def main() -> None:
        with hopper.Engine() as e:
            e.push("q", 1, name="img")
            e.pause("q", "img")
            assert await asyncio.wait_for(e.pull_async("q", timeout=0.2), 3) is None
            e.resume("q", "img")
            job = await asyncio.wait_for(e.pull_async("q", timeout=3), 5)
            assert job is not None and job.name == "img"

    asyncio.run(main())


def test_the_state_names_are_the_engines() -> None:
    """`hopper.State` (for type checkers) spells the engine's names, in its order."""
    assert get_args(hopper.State) == hopper.job.STATES
    with hopper.Engine() as e:
        assert tuple(e.counts("q")) == hopper.job.STATES


def test_dir_shows_the_public_api() -> None:
    names = dir(hopper)
    assert {"Client", "AsyncClient", "Worker", "Producer", "Engine"} <= set(names)
    assert "Any" not in names and "TYPE_CHECKING" not in names

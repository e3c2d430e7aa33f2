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


def test_the_public_names_import_from_hopper() -> None:
    """`__all__` is the public API: `from hopper import *` brings the client classes the
    README uses (imported lazily), and every listed name resolves."""
    namespace: dict[str, object] = {}
    exec("from hopper import *", namespace)
    assert {"Client", "AsyncClient", "Worker", "Producer", "ActiveJob", "Engine"} <= set(namespace)
    assert "Any" not in namespace and "TYPE_CHECKING" not in namespace
    from hopper import Client, Producer, Worker  # noqa: F401  # the README's spelling

    for name in hopper.__all__:
        assert getattr(hopper, name) is not None, name
    assert sorted(hopper.__all__) == dir(hopper)


# ----- job control moves ------------------------------------------------------------------


def test_move_to_delayed_puts_an_active_job_off_without_spending_an_attempt():
    with hopper.Engine(clock_ms=1_000_000) as e:
        jid = e.push("q", 1)
        job = e.pull("q")
        assert job is not None
        with pytest.raises(hopper.LockError):
            e.move_to_delayed(jid, "00000000-0000-7000-8000-000000000000", 500)
        e.move_to_delayed(jid, job.token, 500)
        got = e.get(jid)
        assert got["state"] == "delayed" and got["attempts"] == 0
        assert got["runAt"] == 1_000_500
        with pytest.raises(hopper.InvalidStateError):  # the lease ended with the move
            e.ack(jid, job.token)
        e.advance_clock(500)
        assert e.pull("q").id == jid
    with hopper.Engine() as e, pytest.raises(hopper.InvalidStateError):
        e.move_to_delayed("missing", None, 10)


def test_move_to_delayed_refuses_a_job_that_is_not_active(eng):
    jid = eng.push("q", 1)
    with pytest.raises(hopper.InvalidStateError, match="not active"):
        eng.move_to_delayed(jid, None, 10)
    assert eng.get(jid)["state"] == "waiting"


def test_change_delay_moves_waiting_and_delayed_jobs_in_time():
    with hopper.Engine(clock_ms=1_000_000) as e:
        waiting = e.push("q", 1)
        e.change_delay(waiting, 300)  # waiting -> delayed
        assert e.get(waiting)["state"] == "delayed"
        assert e.get(waiting)["runAt"] == 1_000_300
        e.change_delay(waiting, 50)  # delayed, new time
        assert e.get(waiting)["runAt"] == 1_000_050
        e.change_delay(waiting, 0)  # delayed -> ready now
        assert e.get(waiting)["state"] == "waiting"
        job = e.pull("q")
        e.change_delay(job.id, 20, job.token)  # active: as move_to_delayed
        assert e.get(job.id)["state"] == "delayed" and e.get(job.id)["attempts"] == 0
        e.advance_clock(20)
        job = e.pull("q")
        e.ack(job.id, job.token)
        with pytest.raises(hopper.InvalidStateError, match="completed"):
            e.change_delay(job.id, 10)
        with pytest.raises(hopper.NotFoundError):
            e.change_delay("missing", 10)
        with pytest.raises(hopper.InvalidInputError):
            e.change_delay(job.id, -1)


def test_discard_job_fails_a_job_for_good_whatever_attempts_it_has_left(eng):
    waiting = eng.push("q", 1, max_attempts=5)
    delayed = eng.push("q", 2, delay=60_000)
    eng.discard_job(waiting)
    eng.discard_job(delayed)
    for jid in (waiting, delayed):
        got = eng.get(jid)
        assert got["state"] == "failed" and got["error"] == "Job discarded"
    active = eng.push("q", 3, max_attempts=5)
    job = eng.pull("q")
    assert job is not None and job.id == active
    with pytest.raises(hopper.LockError):
        eng.discard_job(active, "00000000-0000-7000-8000-000000000000")
    eng.discard_job(active, job.token)
    assert eng.get(active)["state"] == "failed"
    with pytest.raises(hopper.InvalidStateError, match="failed"):
        eng.discard_job(active)
    with pytest.raises(hopper.NotFoundError):
        eng.discard_job("missing")
    assert eng.counts("q")["failed"] == 3


def test_promote_first_makes_the_soonest_due_delayed_jobs_ready():
    with hopper.Engine(clock_ms=1_000_000) as e:
        late = e.push("q", "late", delay=3000)
        soon = e.push("q", "soon", delay=1000)
        mid = e.push("q", "mid", delay=2000)
        assert e.promote_first("q", 2) == 2
        assert e.get(soon)["state"] == e.get(mid)["state"] == "waiting"
        assert e.get(late)["state"] == "delayed"
        assert e.promote_first("q", 5) == 1
        assert e.promote_first("q", 5) == 0
        with pytest.raises(hopper.NotFoundError):
            e.promote_first("never-used", 1)
        with pytest.raises(hopper.InvalidInputError):
            e.promote_first("q", -1)


def test_update_data_rewrites_the_data_of_a_job_in_any_state(eng):
    jid = eng.push("q", {"v": 1})
    job = eng.pull("q")
    with pytest.raises(hopper.InvalidStateError):
        eng.update(jid, data={"v": 2})  # `update` refuses active jobs
    eng.update_data(jid, {"v": 2})
    assert eng.get(jid)["data"] == {"v": 2}
    eng.ack(jid, job.token)
    eng.update_data(jid, [3])
    assert eng.get(jid)["data"] == [3]
    with pytest.raises(hopper.NotFoundError):
        eng.update_data("missing", 1)
    with pytest.raises(hopper.InvalidInputError, match="JSON"):
        eng.update_data(jid, {1, 2})
    with hopper.Engine(max_payload_bytes=100) as small:
        kid = small.push("q", 1)
        with pytest.raises(hopper.InvalidInputError, match="payload"):
            small.update_data(kid, "x" * 200)


def test_extend_lock_renews_without_the_token_but_checks_a_given_one():
    with hopper.Engine(clock_ms=1_000_000, stall_interval_ms=1000) as e:
        jid = e.push("q", 1)
        job = e.pull("q", owner=3)
        assert e.extend_lock(jid, None, 5000) == 1_005_000
        assert e.extend_lock(jid, job.token) == 1_001_000  # the default: stall interval
        with pytest.raises(hopper.LockError):
            e.extend_lock(jid, "00000000-0000-7000-8000-000000000000")
        e.advance_clock(999)
        assert e.get(jid)["state"] == "active"
        with pytest.raises(hopper.InvalidStateError):
            e.extend_lock("missing")


# ----- job logs ---------------------------------------------------------------------------


def test_job_logs_add_read_slice_and_clear():
    with hopper.Engine(clock_ms=1_000_000) as e:
        jid = e.push("q", 1)
        assert e.logs(jid) == ([], 0)
        e.add_log(jid, "started")
        e.advance_clock(5)
        e.add_log(jid, "careful", "warn")
        e.add_log(jid, "broke", level="error")
        entries, total = e.logs(jid)
        assert total == 3
        assert entries[0] == hopper.LogEntry("started", "info", 1_000_000, 1)
        assert [(x.message, x.level, x.seq) for x in entries[1:]] == [
            ("careful", "warn", 2),
            ("broke", "error", 3),
        ]
        assert entries[1].timestamp == 1_000_005
        assert [x.message for x in e.logs(jid, 1, 1)[0]] == ["careful"]
        assert [x.message for x in e.logs(jid, -2)[0]] == ["careful", "broke"]
        assert e.logs(jid, 0, -1) == ([], 3)  # bunqueue's slice(start, end + 1)
        e.clear_logs(jid, keep=1)
        assert [x.message for x in e.logs(jid)[0]] == ["broke"]
        e.clear_logs(jid)
        assert e.logs(jid) == ([], 0)
        e.add_log(jid, "again")
        assert e.logs(jid)[0][0].seq == 4  # numbering goes on


def test_job_logs_errors_and_the_per_job_bound():
    with hopper.Engine(max_logs_per_job=2) as e:
        jid = e.push("q", 1)
        for m in "abc":
            e.add_log(jid, m)
        assert [x.message for x in e.logs(jid)[0]] == ["b", "c"]
        with pytest.raises(hopper.InvalidInputError, match="level"):
            e.add_log(jid, "x", "debug")  # type: ignore[arg-type]
        with pytest.raises(hopper.InvalidInputError, match="at most"):
            e.add_log(jid, "x" * (64 * 1024 + 1))
        for call in (
            lambda: e.add_log("missing", "x"),
            lambda: e.logs("missing"),
            lambda: e.clear_logs("missing"),
        ):
            with pytest.raises(hopper.NotFoundError):
                call()
        e.remove(jid)
        with pytest.raises(hopper.NotFoundError):
            e.logs(jid)
    with pytest.raises(hopper.InvalidInputError, match="max_logs_per_job"):
        hopper.Engine(max_logs_per_job=0)


def test_job_logs_survive_a_restart(tmp_path):
    with hopper.Engine(data_dir=tmp_path) as e:
        jid = e.push("q", 1)
        e.add_log(jid, "one")
        e.add_log(jid, "two", "warn")
    with hopper.Engine(data_dir=tmp_path) as e:
        assert [(x.message, x.level) for x in e.logs(jid)[0]] == [("one", "info"), ("two", "warn")]


# ----- queue limits -----------------------------------------------------------------------


def test_rate_limit_holds_pulls_back_and_is_reported():
    with hopper.Engine(clock_ms=1_000_000) as e:
        assert e.queue_limits("q") == hopper.QueueLimits(None, -2, None, False)
        for i in range(4):
            e.push("q", i)
        e.set_rate_limit("q", 2, 1000)
        assert e.pull("q") is not None and e.pull("q") is not None
        assert e.pull("q") is None
        limits = e.queue_limits("q")
        assert limits.rate_limit == hopper.RateLimit(2, 1000, None)
        assert limits.rate_limit_ttl == 1000 and limits.concurrency_limit is None
        e.advance_clock(1000)
        assert e.pull("q") is not None
        e.clear_rate_limit("q")
        assert e.pull("q") is not None
        assert e.queue_limits("q").rate_limit is None
        e.set_rate_limit("q", 1, 1000, ttl_ms=500)
        assert e.queue_limits("q").rate_limit == hopper.RateLimit(1, 1000, 1_001_500)
        e.advance_clock(500)
        assert e.queue_limits("q").rate_limit is None
        with pytest.raises(hopper.InvalidInputError, match="duration"):
            e.set_rate_limit("q", 1, 0)
        with pytest.raises(hopper.InvalidInputError, match="queue name"):
            e.set_rate_limit("bad name", 1, 10)
        with pytest.raises(hopper.InvalidInputError):
            e.set_rate_limit("q", -1, 10)


def test_concurrency_limit_caps_active_jobs(eng):
    for i in range(3):
        eng.push("q", i)
    eng.set_concurrency("q", 1)
    job = eng.pull("q")
    assert job is not None and eng.pull("q") is None
    limits = eng.queue_limits("q")
    assert limits.concurrency_limit == 1 and limits.maxed
    eng.ack(job.id, job.token)
    assert not eng.queue_limits("q").maxed
    assert eng.pull("q") is not None
    eng.clear_concurrency("q")
    assert eng.pull("q") is not None
    assert eng.queue_limits("q").concurrency_limit is None
    eng.clear_concurrency("never-used")  # nothing to clear is not an error
    eng.clear_rate_limit("never-used")


def test_queue_limits_survive_a_restart(tmp_path):
    with hopper.Engine(data_dir=tmp_path) as e:
        e.set_rate_limit("q", 7, 60_000)
        e.set_concurrency("q", 3)
    with hopper.Engine(data_dir=tmp_path) as e:
        limits = e.queue_limits("q")
        assert limits.rate_limit == hopper.RateLimit(7, 60_000, None)
        assert limits.concurrency_limit == 3


def test_workers_registry_starts_empty(eng):
    # Workers register over the TCP protocol (tests/server covers the listing).
    assert eng.workers() == []


# ----- job schedulers -----------------------------------------------------------------------

JAN1 = 1_704_067_200_000  # 2024-01-01T00:00:00Z


def test_scheduler_fires_on_the_manual_clock_and_is_listed():
    with hopper.Engine(clock_ms=JAN1) as e:
        made = e.upsert_scheduler(
            "tick",
            "reports",
            {"kind": "daily"},
            repeat_every_ms=1000,
            job_name="report",
            priority=4,
            max_limit=2,
            prevent_overlap=False,
            job_options={"max_attempts": 7, "backoff": 50},
        )
        assert made == hopper.SchedulerInfo(
            name="tick",
            queue="reports",
            job_name="report",
            data={"kind": "daily"},
            schedule=None,
            repeat_every_ms=1000,
            timezone=None,
            priority=4,
            max_limit=2,
            unique_key=None,
            skip_missed_on_restart=True,
            skip_if_no_worker=False,
            prevent_overlap=False,
            job_options={"max_attempts": 7, "backoff": 50},
            next_run=JAN1 + 1000,
            executions=0,
        )
        assert e.counts("reports")["waiting"] == 0
        e.advance_clock(999)
        assert e.scheduler("tick").executions == 0
        e.advance_clock(1)
        got = e.scheduler("tick")
        assert (got.executions, got.next_run) == (1, JAN1 + 2000)
        job = e.pull("reports")
        assert job is not None
        assert (job.name, job.data, job.priority, job.max_attempts) == (
            "report",
            {"kind": "daily"},
            4,
            7,
        )
        e.advance_clock(1000)
        assert e.scheduler("tick").executions == 2
        assert e.counts("reports")["waiting"] == 1
        # at its limit, the scheduler goes at its next due time, pushing nothing more
        e.advance_clock(1000)
        assert e.scheduler("tick") is None and e.schedulers() == []
        assert e.counts("reports")["waiting"] == 1


def test_scheduler_cron_pattern_overlap_replace_and_remove():
    with hopper.Engine(clock_ms=JAN1) as e:
        first = e.upsert_scheduler("five", "q", 1, schedule="*/5 * * * *")
        assert first.next_run == JAN1 + 300_000 and first.prevent_overlap
        assert first.job_name == "default" and first.job_options is None
        e.upsert_scheduler("now", "q2", None, repeat_every_ms=60_000, immediately=True)
        assert [s.name for s in e.schedulers()] == ["five", "now"]
        assert e.scheduler("now").executions == 1
        assert e.get(e.list_jobs("q2", "waiting")[0][0]["id"])["uniqueKey"] == "cron:now"
        e.advance_clock(300_000)
        e.advance_clock(300_000)
        # prevent_overlap: the second run adds nothing while the first job waits
        assert e.scheduler("five").executions == 2
        assert e.counts("q")["waiting"] == 1
        # a replace keeps the count and the listing place, and recomputes the next run
        replaced = e.upsert_scheduler("five", "q", 2, schedule="@hourly", timezone="UTC")
        assert (replaced.executions, replaced.schedule, replaced.data) == (2, "@hourly", 2)
        assert replaced.next_run == JAN1 + 3_600_000
        assert [s.name for s in e.schedulers()] == ["five", "now"]
        assert e.remove_scheduler("five") is True
        assert e.remove_scheduler("five") is False
        assert e.scheduler("five") is None
        assert e.counts("q")["waiting"] == 1  # its jobs stay


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "either schedule or repeatEvery"),
        ({"repeat_every_ms": 0}, "positive safe integer"),
        ({"schedule": "61 * * * *"}, "Invalid cron expression"),
        ({"schedule": "0 0 30 2 *"}, "no future occurrences"),
        ({"schedule": "0 * * * *", "timezone": "Europe/Rome"}, "unsupported timezone"),
        ({"repeat_every_ms": 10, "job_name": ""}, "Job name"),
        ({"repeat_every_ms": 10, "job_options": {"max_attempts": "x"}}, "maxAttempts"),
        ({"repeat_every_ms": 10, "job_options": {"lifo": True}}, "unknown job option"),
        ({"repeat_every_ms": -1}, "wrong argument"),
        ({"repeat_every_ms": 10, "priority": 2**40}, "wrong argument"),
    ],
)
def test_scheduler_errors_are_invalid_input_and_store_nothing(eng, kwargs, message):
    with pytest.raises(hopper.InvalidInputError, match=message):
        eng.upsert_scheduler("bad", "q", None, **kwargs)
    assert eng.schedulers() == []


def test_scheduler_bad_names_and_data(eng):
    with pytest.raises(hopper.InvalidInputError, match="name is required"):
        eng.upsert_scheduler("", "q", repeat_every_ms=10)
    with pytest.raises(hopper.InvalidInputError, match="queue name"):
        eng.upsert_scheduler("s", "bad name", repeat_every_ms=10)
    with pytest.raises(hopper.InvalidInputError, match="JSON-serializable"):
        eng.upsert_scheduler("s", "q", object(), repeat_every_ms=10)
    with pytest.raises(hopper.InvalidInputError):
        eng.scheduler(5)  # type: ignore[arg-type]
    assert eng.schedulers() == []


def test_schedulers_survive_a_restart(tmp_path):
    with hopper.Engine(data_dir=tmp_path) as e:
        e.upsert_scheduler("nightly", "reports", {"a": 1}, schedule="0 3 * * *", max_limit=5)
        e.upsert_scheduler("gone", "reports", repeat_every_ms=60_000)
        assert e.remove_scheduler("gone")
    with hopper.Engine(data_dir=tmp_path) as e:
        [s] = e.schedulers()
        assert (s.name, s.queue, s.data, s.schedule, s.max_limit) == (
            "nightly",
            "reports",
            {"a": 1},
            "0 3 * * *",
            5,
        )


# ----- flows ---------------------------------------------------------------------------


def _family(policy: hopper.ChildFailurePolicy = "wait") -> list[hopper.FlowJob]:
    return [
        hopper.FlowJob(
            "a", "c1", {"n": 1}, parent="p", on_failure=policy, options={"max_attempts": 1}
        ),
        hopper.FlowJob(
            "b", "c2", {"n": 2}, parent="p", on_failure=policy, options={"max_attempts": 1}
        ),
        hopper.FlowJob("parents", "p", {}, children=("c1", "c2")),
    ]


def _ack(eng: hopper.Engine, queue: str, job_id: str, result: object) -> None:
    job = eng.pull(queue)
    assert job is not None and job.id == job_id
    eng.ack(job.id, job.token, result)


def _fail(eng: hopper.Engine, queue: str, job_id: str) -> None:
    job = eng.pull(queue)
    assert job is not None and job.id == job_id
    assert eng.fail(job.id, job.token, "boom") is None


def test_flow_runs_children_first_and_hands_their_results_up(eng):
    assert eng.push_flow(_family()) == ["c1", "c2", "p"]
    assert eng.get("p")["state"] == "waiting-children"
    assert eng.links("p")[0] == ["c1", "c2"]
    assert eng.pull("parents") is None
    _ack(eng, "a", "c1", {"r": 1})
    assert eng.get("p")["state"] == "waiting-children"
    _ack(eng, "b", "c2", 2)
    assert eng.get("p")["state"] == "waiting"
    assert eng.children_values("p") == hopper.ChildrenValues({"a:c1": {"r": 1}, "b:c2": 2}, {}, {})
    assert eng.children_values("c1") == hopper.ChildrenValues({}, {}, {})
    with pytest.raises(hopper.NotFoundError):
        eng.children_values("nope")


@pytest.mark.parametrize(
    ("policy", "parent_state", "failed", "ignored"),
    [
        ("wait", "waiting-children", {}, {}),
        ("fail_parent", "failed", {}, {}),
        ("continue_parent", "waiting", {"a:c1": "boom"}, {}),
        ("ignore", "waiting-children", {}, {"a:c1": "boom"}),
        ("remove", "waiting-children", {}, {}),
    ],
)
def test_flow_child_failure_policies(eng, policy, parent_state, failed, ignored):
    eng.push_flow(_family(policy))
    _fail(eng, "a", "c1")
    assert eng.get("p")["state"] == parent_state
    values = eng.children_values("p")
    assert (values.failed, values.ignored) == (failed, ignored)
    if policy == "fail_parent":
        assert eng.get("p")["error"] == "Child job c1 failed: boom"
    if policy in ("ignore", "remove"):
        _ack(eng, "b", "c2", 2)  # the parent waited for the other child only
        assert eng.get("p")["state"] == "waiting"


def test_a_bad_flow_adds_nothing(eng):
    bad = [
        [hopper.FlowJob("a", "x", parent="nope")],
        [hopper.FlowJob("a", "x"), hopper.FlowJob("a", "x")],
        [hopper.FlowJob("a", "x:y")],
        [hopper.FlowJob("a", "x", on_failure="fail_parent")],
        [hopper.FlowJob("a", "x", children=("y",)), hopper.FlowJob("a", "y")],
    ]
    for jobs in bad:
        with pytest.raises(hopper.InvalidInputError):
            eng.push_flow(jobs)
    with pytest.raises(hopper.InvalidInputError, match="FlowJob's own fields"):
        eng.push_flow([hopper.FlowJob("a", "x", options={"job_id": "y"})])
    with pytest.raises(hopper.InvalidInputError, match="failure policy"):
        eng.push_flow([hopper.FlowJob("a", "x", on_failure="bogus")])  # type: ignore[arg-type]
    with pytest.raises(hopper.InvalidInputError, match="unexpected keyword"):
        eng.push_flow([hopper.FlowJob("a", "x", options={"bogus": 1})])  # type: ignore[typeddict-unknown-key]
    assert eng.counts() == dict.fromkeys(hopper.job.STATES, 0)
    # Plain tuples are accepted too.
    assert eng.push_flow([("a", "solo", {"k": 1})]) == ["solo"]  # type: ignore[list-item]


def test_move_to_waiting_children_and_remove_child_dependency(eng):
    eng.push_flow(_family())
    _ack(eng, "a", "c1", 1)
    _ack(eng, "b", "c2", 2)
    parent = eng.pull("parents")
    assert parent is not None
    assert eng.move_to_waiting_children("p", parent.token) is False  # nothing pending
    eng.retry("c2")  # a child runs again: the parent must wait for it
    with pytest.raises(hopper.LockError):
        eng.move_to_waiting_children("p", "00000000-0000-7000-8000-000000000000")
    assert eng.move_to_waiting_children("p", parent.token) is True
    assert eng.get("p")["state"] == "waiting-children"
    with pytest.raises(hopper.InvalidStateError):
        eng.move_to_waiting_children("p")
    # Detaching the child releases the parent; the child stays.
    assert eng.remove_child_dependency("c2") is True
    assert eng.get("p")["state"] == "waiting"
    assert eng.get("c2")["state"] == "waiting"
    assert eng.remove_child_dependency("c1") is False
    with pytest.raises(hopper.InvalidInputError, match="has no parent"):
        eng.remove_child_dependency("c2")
    with pytest.raises(hopper.NotFoundError):
        eng.remove_child_dependency("nope")


def test_flows_survive_a_restart(tmp_path):
    with hopper.Engine(data_dir=tmp_path) as e:
        e.push_flow(_family("ignore"))
        _ack(e, "a", "c1", {"r": 1})
    with hopper.Engine(data_dir=tmp_path) as e:
        assert e.get("p")["state"] == "waiting-children"
        assert e.children_values("p").values == {"a:c1": {"r": 1}}
        _fail(e, "b", "c2")
        assert e.get("p")["state"] == "waiting"
        assert e.children_values("p").ignored == {"b:c2": "boom"}


# ----- dead-letter and stall settings ------------------------------------------------


def test_dlq_config_defaults_patch_and_trim():
    with hopper.Engine(clock_ms=1_000_000, retention_count=50) as e:
        assert e.dlq_config("q") == hopper.DlqConfig(False, 3_600_000, 3, 86_400_000, 50)
        for n in range(3):
            e.push("q", n, max_attempts=1)
            _fail(e, "q", e.list_jobs("q", "waiting")[0][0]["id"])
            e.advance_clock(1)
        oldest = e.list_jobs("q", "failed")[0][-1]["id"]
        got = e.set_dlq_config("q", max_entries=2, clear_max_age=True)
        assert got == hopper.DlqConfig(False, 3_600_000, 3, None, 2)
        assert e.counts("q")["failed"] == 2 and e.get(oldest) is None
        got = e.set_dlq_config("q", auto_retry=True, auto_retry_interval_ms=500, max_age_ms=9)
        assert got == hopper.DlqConfig(True, 500, 3, 9, 2)
        assert e.dlq_config("q") == got
        with pytest.raises(hopper.InvalidInputError):
            e.set_dlq_config("q", max_entries=-1)


def test_dlq_auto_retry_on_the_manual_clock():
    with hopper.Engine(clock_ms=1_000_000) as e:
        e.set_dlq_config("q", auto_retry=True, auto_retry_interval_ms=100, max_auto_retries=1)
        jid = e.push("q", 1, max_attempts=1)
        _fail(e, "q", jid)
        e.advance_clock(99)
        assert e.get(jid)["state"] == "failed"
        e.advance_clock(1_000)  # the sweep runs at most once a second
        assert e.get(jid)["state"] == "waiting"
        _fail(e, "q", jid)
        e.advance_clock(5_000)
        assert e.get(jid)["state"] == "failed", "max_auto_retries reached"


def test_stall_config_patch_and_persist(tmp_path):
    with hopper.Engine(data_dir=tmp_path, stall_interval_ms=30_000, max_stalls=3) as e:
        assert e.stall_config("q") == hopper.StallConfig(True, 30_000, 3, 0)
        got = e.set_stall_config("q", max_stalls=5, grace_period_ms=100)
        assert got == hopper.StallConfig(True, 30_000, 5, 100)
        e.set_stall_config("q", enabled=False)
        e.set_dlq_config("q", max_entries=7)
    with hopper.Engine(data_dir=tmp_path) as e:
        assert e.stall_config("q") == hopper.StallConfig(False, 30_000, 5, 100)
        assert e.dlq_config("q").max_entries == 7
        with pytest.raises(hopper.InvalidInputError):
            e.set_stall_config("q", stall_interval_ms="soon")  # type: ignore[arg-type]


def test_stall_config_stalls_a_lease_on_the_manual_clock():
    with hopper.Engine(clock_ms=1_000_000) as e:
        e.set_stall_config("q", stall_interval_ms=100, max_stalls=1)
        jid = e.push("q", 1)
        assert e.pull("q") is not None
        e.advance_clock(100)
        got = e.get(jid)
        assert got["state"] == "failed"
        assert got["error"] == "Job stalled more than the allowed limit"


# ----- groups ----------------------------------------------------------------------------


def test_group_pause_and_concurrency(eng):
    a1 = eng.push("q", 1, group_id="a", priority=5)
    a2 = eng.push("q", 2, group_id="a", priority=5)
    b1 = eng.push("q", 3, group_id="b")
    assert eng.pause_group("q", "a") is True
    assert eng.pause_group("q", "a") is False
    assert eng.is_group_paused("q", "a")
    got = eng.pull("q")
    assert got is not None and got.id == b1
    assert eng.pull("q") is None
    assert eng.resume_group("q", "a") is True
    assert eng.resume_group("q", "a") is False
    eng.set_group_concurrency("q", "a", 1)
    assert eng.group_concurrency("q", "a") == 1
    first = eng.pull("q")
    assert first is not None and first.id == a1
    assert eng.pull("q") is None, "group a is at its limit"
    eng.ack(first.id, first.token)
    second = eng.pull("q")
    assert second is not None and second.id == a2
    assert eng.remove_group_concurrency("q", "a") is True
    assert eng.remove_group_concurrency("q", "a") is False
    assert eng.group_concurrency("q", "a") is None
    with pytest.raises(hopper.InvalidInputError):
        eng.set_group_concurrency("q", "a", 0)


def test_group_rate_limit(eng):
    assert eng.group_rate_limit("q", "g") is None
    eng.set_group_rate_limit("q", "g", 2, 60_000)
    assert eng.group_rate_limit("q", "g") == hopper.GroupRateLimit(2, 60_000)
    ids = [eng.push("q", n, group_id="g") for n in range(3)]
    pulled = [eng.pull("q"), eng.pull("q"), eng.pull("q")]
    assert [j.id if j else None for j in pulled] == [ids[0], ids[1], None]
    assert eng.remove_group_rate_limit("q", "g") is True
    assert eng.remove_group_rate_limit("q", "g") is False
    with pytest.raises(hopper.InvalidInputError):
        eng.set_group_rate_limit("q", "g", 0, 1000)


def test_group_settings_survive_a_restart(tmp_path):
    with hopper.Engine(data_dir=tmp_path) as e:
        e.pause_group("q", "a")
        e.set_group_concurrency("q", "b", 3)
    with hopper.Engine(data_dir=tmp_path) as e:
        assert e.is_group_paused("q", "a") and e.group_concurrency("q", "b") == 3

"""bunqueue's tier-2 commands spoken raw over TCP (getters, job control, queue control,
the dead-letter set, workers, WaitJob), with the reference's reply shapes and wording.

Like test_tcp_protocol.py, the target is hopper or, with HOPPER_TCP_TEST_TARGET=bunqueue,
bunqueue 2.9.5 itself (these tests were validated on it). Where hopper words an error
its own way the test names the gist (see `expect_error`)."""

from __future__ import annotations

import re
import time
from typing import Any

import pytest
from tcp_client import ON_BUNQUEUE, REPO, Conn
from test_tcp_protocol import JOB_KEYS, OK, expect_error, pull_locked, push_many

GETTER_KEYS = JOB_KEYS | {"state", "returnvalue", "failedReason"}


def state(c: Conn, job_id: str) -> str:
    got: str = c.call_ok("GetState", id=job_id)["state"]
    return got


def strip(reply: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in reply.items() if k != "reqId"}


def finish_one(c: Conn, queue: str, *, fail: str | None = None) -> str:
    job, token = pull_locked(c, queue)
    if fail is None:
        c.call_ok("ACK", id=job["id"], token=token, result={"done": job["id"]})
    else:
        c.call_ok("FAIL", id=job["id"], token=token, error=fail)
    return str(job["id"])


# ----- getters -------------------------------------------------------------------------


def test_count_counts_waiting_prioritized_and_delayed(conn: Conn, queue: str) -> None:
    push_many(conn, queue, 2)
    push_many(conn, queue, 2, priority=3)
    conn.call_ok("PUSH", queue=queue, data={}, delay=60_000)
    assert strip(conn.call("Count", queue=queue)) == {"ok": True, "count": 5}
    assert conn.call_ok("Count", queue=f"{queue}-none")["count"] == 0


def test_counts_per_priority_keyed_by_priority_text(conn: Conn, queue: str) -> None:
    push_many(conn, queue, 2)
    push_many(conn, queue, 3, priority=7)
    conn.call_ok("PUSH", queue=queue, data={}, delay=60_000)
    reply = strip(conn.call("GetCountsPerPriority", queue=queue))
    assert reply == {"ok": True, "queue": queue, "counts": {"0": 3, "7": 3}}


def test_get_jobs_by_state_with_paging_and_order(conn: Conn, queue: str) -> None:
    ids = push_many(conn, queue, 5)
    done = finish_one(conn, queue)
    page = conn.call_ok("GetJobs", queue=queue, state="waiting", limit=2, offset=1)["jobs"]
    assert [j["id"] for j in page] == ids[2:4]
    assert all(set(j) >= GETTER_KEYS and j["state"] == "waiting" for j in page)
    both = conn.call_ok("GetJobs", queue=queue, state=["waiting", "completed"], asc=False)
    listed = [(j["id"], j["state"]) for j in both["jobs"]]
    assert listed == [(i, "waiting") for i in reversed(ids[1:])] + [(done, "completed")]
    completed = next(j for j in both["jobs"] if j["id"] == done)
    assert completed["returnvalue"] == {"done": done}
    everything = conn.call_ok("GetJobs", queue=queue)["jobs"]
    assert sorted(j["id"] for j in everything) == sorted(ids)
    assert conn.call_ok("GetJobs", queue=queue, state="bogus")["jobs"] == []


def test_get_jobs_failed_carries_the_reason(conn: Conn, queue: str) -> None:
    push_many(conn, queue, 1, maxAttempts=1)
    failed = finish_one(conn, queue, fail="boom")
    (job,) = conn.call_ok("GetJobs", queue=queue, state="failed")["jobs"]
    assert job["id"] == failed and job["state"] == "failed" and job["failedReason"] == "boom"


def test_paused_queue_lists_ready_jobs_as_paused(conn: Conn, queue: str) -> None:
    ids = push_many(conn, queue, 2)
    assert strip(conn.call("Pause", queue=queue)) == OK
    assert strip(conn.call("IsPaused", queue=queue)) == {"ok": True, "paused": True}
    assert conn.call_ok("GetJobs", queue=queue, state="waiting")["jobs"] == []
    paused = conn.call_ok("GetJobs", queue=queue, state="paused")["jobs"]
    assert [j["id"] for j in paused] == ids and {j["state"] for j in paused} == {"paused"}
    assert conn.call_ok("PULL", queue=queue)["job"] is None
    assert strip(conn.call("Resume", queue=queue)) == OK
    assert conn.call_ok("IsPaused", queue=queue)["paused"] is False
    assert conn.call_ok("PULL", queue=queue)["job"]["id"] == ids[0]


def test_get_job_by_custom_id(conn: Conn, queue: str) -> None:
    conn.call_ok("PUSH", queue=queue, data={"a": 1}, jobId="order-17")
    job = conn.call_ok("GetJobByCustomId", customId="order-17")["job"]
    assert job["id"] == "order-17" and job["data"] == {"a": 1}
    expect_error(conn.call("GetJobByCustomId", customId="no-such"), "Job not found")


def test_list_queues_names_known_queues(conn: Conn, queue: str) -> None:
    push_many(conn, queue, 1)
    assert queue in conn.call_ok("ListQueues")["queues"]


# ----- job control ---------------------------------------------------------------------


def test_cancel_removes_a_waiting_job_and_refuses_an_active_one(conn: Conn, queue: str) -> None:
    waiting, active = push_many(conn, queue, 2)
    assert strip(conn.call("Cancel", id=waiting)) == OK
    assert state(conn, waiting) == "unknown"
    expect_error(conn.call("Cancel", id=waiting), "Job not found or cannot be cancelled")
    conn.call_ok("PULL", queue=queue)
    expect_error(conn.call("Cancel", id=active), "Job not found or cannot be cancelled")
    assert state(conn, active) == "active"


def test_update_replaces_data_even_while_active(conn: Conn, queue: str) -> None:
    (jid,) = push_many(conn, queue, 1)
    assert strip(conn.call("Update", id=jid, data={"v": 2})) == OK
    job, _ = pull_locked(conn, queue)
    assert job["data"] == {"v": 2}
    conn.call_ok("Update", id=jid, data={"v": 3})
    assert conn.call_ok("GetJob", id=jid)["job"]["data"] == {"v": 3}
    expect_error(conn.call("Update", id="nope", data=1), "Job not found or cannot be updated")


def test_change_priority_reorders_waiting_jobs(conn: Conn, queue: str) -> None:
    first, second = push_many(conn, queue, 2)
    assert strip(conn.call("ChangePriority", id=second, priority=5)) == OK
    assert state(conn, second) == "prioritized"
    assert conn.call_ok("PULL", queue=queue)["job"]["id"] == second
    expect_error(
        conn.call("ChangePriority", id=second, priority=1), "Job not found or not in queue"
    )
    expect_error(
        conn.call("ChangePriority", id="nope", priority=1), "Job not found or not in queue"
    )
    assert state(conn, first) == "waiting"


def test_change_delay_and_promote(conn: Conn, queue: str) -> None:
    (jid,) = push_many(conn, queue, 1)
    assert strip(conn.call("ChangeDelay", id=jid, delay=60_000)) == OK
    assert state(conn, jid) == "delayed"
    assert conn.call_ok("PULL", queue=queue)["job"] is None
    assert strip(conn.call("Promote", id=jid)) == OK
    assert state(conn, jid) == "waiting"
    expect_error(conn.call("Promote", id=jid), "Job not found or not delayed")


def test_promote_jobs_takes_a_count(conn: Conn, queue: str) -> None:
    for _ in range(3):
        conn.call_ok("PUSH", queue=queue, data={}, delay=60_000)
    assert strip(conn.call("PromoteJobs", queue=queue, count=2)) == {"ok": True, "count": 2}
    assert conn.call_ok("PromoteJobs", queue=queue)["count"] == 1
    assert conn.call_ok("Count", queue=queue)["count"] == 3


def test_move_to_delayed_puts_an_active_job_off(conn: Conn, queue: str) -> None:
    push_many(conn, queue, 1)
    job, token = pull_locked(conn, queue)
    reply = conn.call("MoveToDelayed", id=job["id"], delay=60_000, token=token)
    assert strip(reply) == OK
    got = conn.call_ok("GetJob", id=job["id"])["job"]
    assert got["state"] == "delayed" and got["attempts"] == 0
    assert got["runAt"] >= job["startedAt"] + 59_000
    # On a delayed job it changes the delay (the reference's MoveToDelayed is ChangeDelay).
    assert strip(conn.call("MoveToDelayed", id=job["id"], delay=120_000)) == OK
    assert conn.call_ok("GetJob", id=job["id"])["job"]["runAt"] >= got["runAt"] + 59_000
    conn.call_ok("Promote", id=job["id"])
    done = finish_one(conn, queue)
    expect_error(
        conn.call("MoveToDelayed", id=done, delay=10),
        "Job is not active (current state: completed)",
    )
    expect_error(conn.call("MoveToDelayed", id="nope", delay=10), "Job not found")


def test_discard_fails_a_job_for_good(conn: Conn, queue: str) -> None:
    waiting, held = push_many(conn, queue, 2, maxAttempts=5)
    job, token = pull_locked(conn, queue)
    assert job["id"] == waiting
    assert strip(conn.call("Discard", id=waiting, token=token)) == OK
    assert state(conn, waiting) == "failed"
    assert strip(conn.call("Discard", id=held)) == OK
    assert state(conn, held) == "failed"
    expect_error(conn.call("Discard", id="nope"), "Job not found")


def test_extend_lock_and_extend_locks(conn: Conn, queue: str) -> None:
    push_many(conn, queue, 2)
    a, ta = pull_locked(conn, queue)
    b, tb = pull_locked(conn, queue)
    assert strip(conn.call("ExtendLock", id=a["id"], token=ta, duration=5000)) == OK
    reply = conn.call(
        "ExtendLocks", ids=[a["id"], b["id"]], tokens=[ta, tb], durations=[5000, 5000]
    )
    assert strip(reply) == {"ok": True, "count": 2}
    short = conn.call("ExtendLocks", ids=[a["id"], b["id"]], tokens=[ta], durations=[1000])
    assert strip(short) == {"ok": True, "count": 2}
    wrong = conn.call("ExtendLocks", ids=[a["id"], b["id"]], tokens=["x", "y"], durations=[1, 1])
    assert strip(wrong) == {"ok": True, "count": 0}
    lost = "Lock not found or invalid token"
    expect_error(conn.call("ExtendLock", id=a["id"], token="x", duration=100), lost)
    expect_error(conn.call("ExtendLock", id="nope", duration=100), lost)


def test_get_progress_of_an_active_job(conn: Conn, queue: str) -> None:
    push_many(conn, queue, 1)
    job, _ = pull_locked(conn, queue)
    conn.call_ok("Progress", id=job["id"], progress=40)
    reply = conn.call_ok("GetProgress", id=job["id"])
    assert reply["progress"] == 40
    expect_error(conn.call("GetProgress", id="nope"), "Job not found")


# ----- queue control -------------------------------------------------------------------


def test_drain_removes_waiting_and_delayed(conn: Conn, queue: str) -> None:
    push_many(conn, queue, 3)
    conn.call_ok("PUSH", queue=queue, data={}, delay=60_000)
    pull_locked(conn, queue)
    assert strip(conn.call("Drain", queue=queue)) == {"ok": True, "count": 3}
    assert conn.call_ok("Count", queue=queue)["count"] == 0
    assert conn.call_ok("Drain", queue=f"{queue}-none")["count"] == 0


def test_clean_by_state_with_grace_and_limit(conn: Conn, queue: str) -> None:
    push_many(conn, queue, 3)
    done = [finish_one(conn, queue) for _ in range(3)]
    reply = conn.call_ok("Clean", queue=queue, grace=60_000, state="completed")
    assert reply["count"] == 0 and reply["ids"] == []
    reply = conn.call_ok("Clean", queue=queue, grace=0, state="completed", limit=2)
    assert reply["count"] == 2 and set(reply["ids"]) <= set(done)
    push_many(conn, queue, 2)
    reply = conn.call_ok("Clean", queue=queue, grace=0)
    assert reply["count"] == 2
    assert strip(conn.call("Clean", queue=f"{queue}-none", grace=0)) == {
        "ok": True,
        "count": 0,
        "ids": [],
    }


def test_obliterate_removes_the_queue(conn: Conn, queue: str) -> None:
    push_many(conn, queue, 2)
    assert strip(conn.call("Obliterate", queue=queue)) == OK
    assert queue not in conn.call_ok("ListQueues")["queues"]
    assert conn.call_ok("Count", queue=queue)["count"] == 0
    assert strip(conn.call("Obliterate", queue=f"{queue}-none")) == OK


# ----- dead letters and retries ----------------------------------------------------------


def test_dlq_lists_retries_and_purges_failed_jobs(conn: Conn, queue: str) -> None:
    push_many(conn, queue, 3, maxAttempts=1)
    failed = [finish_one(conn, queue, fail=f"boom {i}") for i in range(3)]
    reply = conn.call_ok("Dlq", queue=queue)
    assert sorted(j["id"] for j in reply["jobs"]) == sorted(failed)
    entry = reply["entries"][0]
    assert {"job", "enteredAt", "reason", "error", "attempts", "retryCount"} <= set(entry)
    assert entry["reason"] == "max_attempts_exceeded" and entry["error"].startswith("boom")
    assert conn.call_ok("Dlq", queue=queue, count=1)["entries"].__len__() == 1
    assert strip(conn.call("RetryDlq", queue=queue, jobId=failed[0])) == {"ok": True, "count": 1}
    assert state(conn, failed[0]) == "waiting"
    assert conn.call_ok("RetryDlq", queue=queue, count=1)["count"] == 1
    assert strip(conn.call("PurgeDlq", queue=queue)) == {"ok": True, "count": 1}
    assert conn.call_ok("Dlq", queue=queue)["jobs"] == []


def test_retry_completed_runs_jobs_again(conn: Conn, queue: str) -> None:
    push_many(conn, queue, 2)
    done = [finish_one(conn, queue) for _ in range(2)]
    assert strip(conn.call("RetryCompleted", queue=queue, id=done[0])) == {"ok": True, "count": 1}
    assert state(conn, done[0]) == "waiting"
    assert conn.call_ok("RetryCompleted", queue=queue)["count"] == 1
    assert state(conn, done[1]) == "waiting"


# ----- dedup keys ------------------------------------------------------------------------


def test_dedup_keys_can_be_looked_up_and_released(conn: Conn, queue: str) -> None:
    holder = conn.call_ok("PUSH", queue=queue, data=1, uniqueKey="k1")["id"]
    other = conn.call_ok("PUSH", queue=queue, data=2, uniqueKey="k2")["id"]
    reply = strip(conn.call("GetDeduplicationJobId", queue=queue, deduplicationId="k1"))
    assert reply == {"ok": True, "data": {"jobId": holder}}
    nobody = conn.call_ok("GetDeduplicationJobId", queue=queue, deduplicationId="none")
    assert nobody["data"] == {"jobId": None}
    released = strip(conn.call("RemoveDeduplicationKey", queue=queue, deduplicationId="k1"))
    assert released == {"ok": True, "data": {"count": 1}}
    again = conn.call_ok("RemoveDeduplicationKey", queue=queue, deduplicationId="k1")
    assert again["data"] == {"count": 0}
    assert conn.call_ok("PUSH", queue=queue, data=3, uniqueKey="k1")["id"] != holder
    assert conn.call_ok("Count", queue=queue)["count"] == 3
    by_job = strip(conn.call("RemoveJobDeduplicationKey", id="nope"))
    assert by_job == {"ok": True, "data": {"removed": False}}
    assert state(conn, other) == "waiting"


def test_dlq_stats_count_the_dead_letters(conn: Conn, queue: str) -> None:
    push_many(conn, queue, 2, maxAttempts=1)
    finish_one(conn, queue, fail="boom")
    stats = conn.call_ok("GetDlqStats", queue=queue)["data"]["stats"]
    assert stats["total"] == 1 and stats["byQueue"] == {queue: 1}
    assert stats["byReason"]["max_attempts_exceeded"] == 1
    assert isinstance(stats["oldestEntry"], float | int)


# ----- waiting for a job -----------------------------------------------------------------


def test_wait_job_answers_when_the_job_completes(connect: Any, queue: str) -> None:
    waiter, worker = connect(), connect()
    (jid,) = push_many(worker, queue, 1)
    req = waiter.request("WaitJob", id=jid, timeout=10_000)
    waiter.send({"cmd": "Ping", "reqId": "ping"})
    # Replies go out as commands finish: the Ping's comes first, so the WaitJob (read
    # before the Ping) is waiting when the job completes.
    assert waiter.next_reply()["reqId"] == "ping"
    _job, token = pull_locked(worker, queue)
    worker.call_ok("ACK", id=jid, token=token, result={"sum": 42})
    reply = waiter.reply(req, timeout=10)
    assert strip(reply) == {"ok": True, "completed": True, "result": {"sum": 42}}
    again = waiter.call("WaitJob", id=jid, timeout=100)
    assert strip(again) == {"ok": True, "completed": True, "result": {"sum": 42}}


def test_wait_job_times_out_and_refuses_unknown_ids(conn: Conn, queue: str) -> None:
    (jid,) = push_many(conn, queue, 1)
    sent = time.monotonic()
    assert strip(conn.call("WaitJob", id=jid, timeout=300)) == {"ok": True, "completed": False}
    assert time.monotonic() - sent >= 0.25
    expect_error(conn.call("WaitJob", id="nope", timeout=100), "Job not found")
    expect_error(conn.call("WaitJob", id=jid, timeout=600_001), None, "timeout")


# ----- workers ---------------------------------------------------------------------------


def test_list_workers_with_totals(conn: Conn) -> None:
    name = f"w-{time.monotonic_ns()}"
    reg = conn.call_ok("RegisterWorker", name=name, queues=["a"], concurrency=4)["data"]
    data = conn.call_ok("ListWorkers")["data"]
    mine = [w for w in data["workers"] if w["id"] == reg["workerId"]]
    assert len(mine) == 1 and mine[0]["name"] == name and mine[0]["uptime"] >= 0
    stats = data["stats"]
    assert set(stats) == {
        "total",
        "active",
        "totalProcessed",
        "totalFailed",
        "activeJobs",
        "concurrencySlots",
    }
    assert stats["total"] >= 1 and stats["concurrencySlots"] >= 4


def test_an_unknown_command_is_named(conn: Conn) -> None:
    reply = conn.call("NoSuchCommand")
    assert strip(reply) == {"ok": False, "error": "Unknown command: NoSuchCommand"}


# ----- the server ----------------------------------------------------------------------


def test_hello_names_protocol_version_3(conn: Conn) -> None:
    reply = strip(conn.call("Hello", protocolVersion=3))
    assert reply["ok"] is True and reply["protocolVersion"] == 3
    assert reply["capabilities"] == ["pipelining", "separate-job-name"]
    assert reply["server"] in {"bunqueue", "hopper"} and isinstance(reply["version"], str)


def test_storage_status_reports_healthy_storage(conn: Conn) -> None:
    reply = strip(conn.call("StorageStatus"))
    assert reply == {"ok": True, "data": {"diskFull": False, "error": None, "since": None}}


def test_stats_and_metrics_count_what_happened(conn: Conn, queue: str) -> None:
    push_many(conn, queue, 2)
    finish_one(conn, queue)
    stats = conn.call_ok("Stats")["stats"]
    assert set(stats) == {
        "waiting",
        "active",
        "delayed",
        "dlq",
        "completed",
        "failed",
        "uptime",
        "pushPerSec",
        "pullPerSec",
    }
    assert stats["waiting"] >= 1 and stats["completed"] >= 1
    metrics = conn.call_ok("Metrics")["metrics"]
    assert set(metrics) == {
        "totalPushed",
        "totalPulled",
        "totalCompleted",
        "totalFailed",
        "avgLatencyMs",
        "avgProcessingMs",
        "memoryUsageMb",
        "sqliteSizeMb",
        "activeConnections",
    }
    assert metrics["totalPushed"] >= 2 and metrics["totalCompleted"] >= 1


def test_prometheus_text(conn: Conn, queue: str) -> None:
    push_many(conn, queue, 1)
    text = conn.call_ok("Prometheus")["data"]["metrics"]
    assert "# TYPE bunqueue_jobs_waiting gauge" in text


@pytest.mark.skipif(ON_BUNQUEUE, reason="checks hopper's documented command table")
def test_the_documented_command_table_is_what_the_server_answers(conn: Conn) -> None:
    """docs/compatibility.md's command table: each "yes" command is known to the server
    (whatever its reply to an empty request), each "no" answers `Unknown command`."""
    doc = (REPO / "docs" / "compatibility.md").read_text()
    rows = re.findall(r"^\| [123] \| `(\w+)` \| (yes|no)", doc, flags=re.M)
    assert len(rows) == 107
    for command, status in rows:
        if command in {"Auth", "SubscribeEvents", "UnsubscribeEvents"}:
            continue  # these change the connection; test_tcp_protocol.py covers them
        reply = conn.call(command)
        unknown = reply.get("error") == f"Unknown command: {command}"
        assert unknown == (status == "no"), (command, status, reply)


def test_workers_registered_without_an_id_get_distinct_ids(conn: Conn) -> None:
    ids = {
        conn.call_ok("RegisterWorker", name="same", queues=["a"])["data"]["workerId"]
        for _ in range(5)
    }
    assert len(ids) == 5
